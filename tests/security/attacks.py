"""The attacks, as small Python programs a hostile container runs (through `nsbox exec`).

Each program prints one last line: `SUCCEEDED <detail>` when the attempt did
what it tried, `FAILED <errno name or reason>` when something stopped it. The
tests never trust that line alone: they also look at the host (or the other
pod) from outside and check nothing changed.

Every attack is harmless if it succeeds: sysrq gets "h" (help), sysctls and
sysfs files get their own value written back, devices are only read.
"""

from __future__ import annotations

import subprocess

from conftest import Nsbox

PRELUDE = r"""
import ctypes, errno, os, socket, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(result):
    if result < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return result
def run(*argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        said = (p.stderr or p.stdout).strip()
        raise OSError(0, said.splitlines()[-1] if said else f"exit {p.returncode}")
args = sys.argv[1:]
try:
"""

EPILOGUE = r"""
except OSError as e:
    print("FAILED", errno.errorcode.get(e.errno, e.strerror) if e.errno else e.strerror)
"""


def program(body: str) -> str:
    return PRELUDE + "".join("    " + line + "\n" for line in body.strip().splitlines()) + EPILOGUE


MOUNT_TMPFS = program("""
check(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
print("SUCCEEDED mounted a tmpfs on /mnt")
""")

IP_LINK_ADD = program("""
run("ip", "link", "add", "nsbxatk0", "type", "veth", "peer", "name", "nsbxatk1")
print("SUCCEEDED added nsbxatk0")
""")

SET_HOSTNAME = program("""
check(libc.sethostname(b"pwned", 5))
print("SUCCEEDED hostname is now", socket.gethostname())
""")

# args: path, new content
WRITE_FILE = program("""
with open(args[0], "w") as f:
    f.write(args[1])
print("SUCCEEDED wrote", args[0], "(in the container's view)")
""")

# Write back what is there: if the wall is missing, nothing changes anyway. args: path
REWRITE_FILE = program("""
with open(args[0]) as f:
    value = f.read()
with open(args[0], "w") as f:
    f.write(value)
print("SUCCEEDED wrote", args[0])
""")

WRITE_SYSRQ = program("""
with open("/proc/sysrq-trigger", "w") as f:
    f.write("h")
print("SUCCEEDED wrote /proc/sysrq-trigger")
""")

OPEN_KCORE = program("""
with open("/proc/kcore", "rb") as f:
    data = f.read(64)
print(f"SUCCEEDED read {len(data)} bytes of /proc/kcore" if data else "FAILED masked (reads empty)")
""")

# args: "NAME:TYPE:MAJOR:MINOR" ...; by path in /dev, then by mknod in /dev, / and /tmp.
READ_DEVICES = program("""
import stat
opened = []
for spec in args:
    name, kind, major, minor = spec.split(":")
    mode = (stat.S_IFBLK if kind == "b" else stat.S_IFCHR) | 0o600
    paths = [f"/dev/{name}"]
    for d in ("/dev", "/", "/tmp"):
        node = os.path.join(d, f"nsbx-{name}")
        try:
            os.mknod(node, mode, os.makedev(int(major), int(minor)))
            paths.append(node)
        except OSError:
            pass
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            opened.append(path)
            os.close(fd)
        except OSError:
            pass
        if path != f"/dev/{name}":
            os.unlink(path)     # a privileged container's /dev is the host's
if opened:
    print("SUCCEEDED opened", " ".join(opened))
else:
    raise OSError(errno.EPERM, "no device opened")
""")

LOAD_MODULE = program("""
image = ctypes.create_string_buffer(b"\\x7fELF" + bytes(60))
libc.syscall.restype = ctypes.c_long
tried = []
for what, call in (("init_module", lambda: libc.syscall(175, image, ctypes.c_ulong(64), b"")),
                   ("finit_module", lambda: libc.syscall(313, os.open("/bin/true", os.O_RDONLY), b"", 0))):
    if call() == 0:
        print("SUCCEEDED", what)
        sys.exit(0)
    tried.append(f"{what}={errno.errorcode[ctypes.get_errno()]}")
for tool in ("modprobe", "insmod"):
    try:
        run(tool, "veth")
        print("SUCCEEDED", tool)
        sys.exit(0)
    except (OSError, FileNotFoundError) as e:
        tried.append(f"{tool}: {e.strerror or e}")
raise OSError(0, "; ".join(tried))
""")

# args: host pid
KILL = program("""
os.kill(int(args[0]), 9)
print("SUCCEEDED sent SIGKILL to", args[0])
""")

# args: pid; PTRACE_ATTACH, then /proc/PID/mem
PTRACE = program("""
libc.ptrace.restype = ctypes.c_long
if libc.ptrace(16, int(args[0]), None, None) == 0:
    print("SUCCEEDED ptrace-attached to", args[0])
    sys.exit(0)
err = errno.errorcode[ctypes.get_errno()]
try:
    with open(f"/proc/{args[0]}/mem", "rb"):
        print("SUCCEEDED opened /proc/%s/mem" % args[0])
except OSError as e:
    raise OSError(0, f"ptrace {err}, /proc/{args[0]}/mem {errno.errorcode[e.errno]}")
""")

# args: pid whose namespaces to join ("1" = what the container sees as PID 1)
SETNS = program("""
joined, refused = [], []
for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user"):
    try:
        fd = os.open(f"/proc/{args[0]}/ns/{ns}", os.O_RDONLY)
    except OSError as e:
        refused.append(f"{ns}={errno.errorcode[e.errno]}")
        continue
    if libc.setns(fd, 0) == 0:
        joined.append(ns)
    else:
        refused.append(f"{ns}={errno.errorcode[ctypes.get_errno()]}")
if joined:
    print("SUCCEEDED setns", " ".join(joined), "| refused", " ".join(refused))
else:
    raise OSError(0, " ".join(refused))
""")

# args: SysV key, POSIX shm name, abstract socket name, TCP port
REACH_OTHER_POD = program("""
reached = []
libc.shmget.restype = ctypes.c_int
if libc.shmget(int(args[0], 0), 0, 0) >= 0:
    reached.append("sysv-shm")
if os.path.exists(f"/dev/shm/{args[1]}"):
    reached.append("posix-shm")
for family, address in ((socket.AF_UNIX, "\\0" + args[2]), (socket.AF_INET, ("127.0.0.1", int(args[3])))):
    s = socket.socket(family)
    s.settimeout(2)
    try:
        s.connect(address)
        reached.append("abstract-socket" if family == socket.AF_UNIX else "tcp")
    except OSError:
        pass
    s.close()
if reached:
    print("SUCCEEDED reached", " ".join(reached))
else:
    raise OSError(0, "nothing of the other pod is reachable")
""")

# The other pod: a SysV segment, a /dev/shm file, an abstract socket and a TCP port,
# reporting any connection. args: key, shm name, abstract name, port
VICTIM = r"""
import ctypes, os, select, socket, sys
key, shm, abstract, port = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.shmget(int(key, 0), 4096, 0o1666) >= 0
open(f"/dev/shm/{shm}", "w").write("secret")
u = socket.socket(socket.AF_UNIX); u.bind("\0" + abstract); u.listen()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(port))); t.listen()
print("ready", flush=True)
while True:
    for s in select.select([u, t], [], [])[0]:
        s.accept()
        print("connection on", "abstract" if s is u else "tcp", flush=True)
"""

FORK_BOMB = r"""
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)    # still a bomb: every process keeps forking as soon as a slot frees
"""


def attempt(nsbox: Nsbox, pod: str, attack: str, *args: str, container: str | None = None) -> str:
    """Run `attack` inside the container; its verdict line ("SUCCEEDED ..." / "FAILED ...")."""
    where = ["-c", container] if container else []
    p = nsbox("exec", pod, *where, "--", "python3", "-c", attack, *args, check=False)
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert lines and lines[-1].split()[0] in ("SUCCEEDED", "FAILED"), f"attack did not run: {p}"
    return lines[-1]


def host_block_and_char_devices() -> list[str]:
    """NAME:TYPE:MAJOR:MINOR of every block device, and the char devices outside the default list
    that the host's root can open (what an escape would want)."""
    import os

    found = []
    for name in sorted(os.listdir("/sys/class/block")):
        with open(f"/sys/class/block/{name}/dev") as f:
            found.append(f"{name}:b:{f.read().strip()}")
    for name in ("kmsg", "kvm", "mem", "port", "fuse", "loop-control", "hwrng", "vsock", "console", "tty0"):
        try:
            st = os.stat(f"/dev/{name}")
        except FileNotFoundError:
            continue
        found.append(f"{name}:c:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return found


def openable_on_host(devices: list[str]) -> list[str]:
    """Those of `devices` the host's root can open here (some hosts fence even root off a few)."""
    import os

    ok = []
    for spec in devices:
        name = spec.split(":")[0]
        try:
            os.close(os.open(f"/dev/{name}", os.O_RDONLY | os.O_NONBLOCK))
            ok.append(spec)
        except OSError:
            pass
    return ok


def ip_links(pid: int) -> list[str]:
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"], capture_output=True, text=True)
    return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()]


# The calls the runtime default seccomp profile exists for (docs/security.md, "System calls"),
# each made so that it is harmless if it succeeds, and, where the kernel has a check that comes
# before its capability check, with arguments that fail that check: without the filter the call
# reaches the kernel and fails with its own errno (E2BIG, EINVAL, EBADF, ENOSYS), with it EPERM.
# x86_64 numbers. args: the call's name.
SYSCALL = program("""
libc.syscall.restype = ctypes.c_long
def sys(nr, *a):
    return check(libc.syscall(nr, *a))
def bogus_bpf():
    attr = ctypes.create_string_buffer(4096 + 8)
    attr[4096] = b"\\x01"                     # non-zero beyond the kernel's union bpf_attr: E2BIG
    return sys(321, 5, attr, ctypes.c_uint(len(attr)))     # BPF_PROG_LOAD
def bogus_perf():
    attr = ctypes.create_string_buffer(128)
    attr[4] = b"\\x01"                         # attr.size = 1: below PERF_ATTR_SIZE_VER0, E2BIG
    return sys(298, attr, 0, -1, -1, ctypes.c_ulong(0))
def bogus_handle():
    handle = ctypes.create_string_buffer(8 + 8)
    handle[0] = b"\\x08"                       # handle_bytes 8, type 1 (FILEID_INO32_GEN)
    handle[4] = b"\\x01"
    return sys(304, -1, handle, os.O_RDONLY)   # mount_fd -1: EBADF before the capability check
calls = {
    "unshare-user": lambda: check(libc.unshare(0x10000000)),                          # CLONE_NEWUSER
    "keyctl-join": lambda: sys(250, 1, None),                   # KEYCTL_JOIN_SESSION_KEYRING, anonymous
    "add_key": lambda: sys(248, b"user", b"nsbox-attack", b"x", ctypes.c_size_t(1), -2),  # process keyring
    "bpf": bogus_bpf,
    "perf_event_open": bogus_perf,
    "kexec_load": lambda: sys(246, ctypes.c_ulong(0), ctypes.c_ulong(0), None, ctypes.c_ulong(0xFFFF0000)),
    "finit_module": lambda: sys(313, -1, b"", 0xFFFF),          # bad fd and flags: EBADF/EINVAL/ENOSYS
    "open_by_handle_at": bogus_handle,
    "userfaultfd": lambda: sys(323, os.O_CLOEXEC | 1),          # UFFD_USER_MODE_ONLY: needs no privilege
    "clone3": lambda: sys(435, None, ctypes.c_size_t(0)),       # size 0: EINVAL; the profile: ENOSYS
    "vsock": lambda: socket.socket(40, socket.SOCK_STREAM).fileno(),                  # AF_VSOCK
}
print("SUCCEEDED", args[0], "returned", calls[args[0]]())
""")
