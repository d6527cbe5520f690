"""The same attacks from a default and from a privileged container, side by side.

docs/security.md §10: privileged means trusted. It has every capability, the host's /dev,
writable /sys and /proc/sys and no masked paths, so what the kernel allows a
root process it allows the container; its root is still the copy-on-write view,
and it still lives in its pod's namespaces. TABLE states, per attack, what a
privileged container achieves; a default one achieves none of them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import attacks
import pytest
from attacks import attempt
from conftest import private_root


def host_has(path: str) -> bool:
    return os.path.exists(path)


# (attack, program, arguments (a function of the fixture's context), does it succeed when privileged?, why)
TABLE = [
    ("mount-tmpfs", attacks.MOUNT_TMPFS, lambda ctx: [], True, "CAP_SYS_ADMIN, in its own mount namespace"),
    ("ip-link-add", attacks.IP_LINK_ADD, lambda ctx: [], True, "CAP_NET_ADMIN, in the pod's netns"),
    ("set-hostname", attacks.SET_HOSTNAME, lambda ctx: [], True, "the pod's UTS namespace, not the host's"),
    ("read-host-devices", attacks.READ_DEVICES, lambda ctx: ctx["devices"], True, "the host's /dev, no device rules"),
    ("open-kcore", attacks.OPEN_KCORE, lambda ctx: [], host_has("/proc/kcore"), "not masked (if the kernel has it)"),
    (
        "write-sysrq",
        attacks.WRITE_SYSRQ,
        lambda ctx: [],
        host_has("/proc/sysrq-trigger"),
        "not read-only (if the kernel has it)",
    ),
    (
        "write-netns-sysctl",
        attacks.REWRITE_FILE,
        lambda ctx: ["/proc/sys/net/ipv4/ip_default_ttl"],
        True,
        "/proc/sys is writable",
    ),
    ("load-module", attacks.LOAD_MODULE, lambda ctx: [], False, "CAP_SYS_MODULE, but the test offers no valid module"),
    ("kill-host-process", attacks.KILL, lambda ctx: [str(ctx["host_sleep"])], False, "its own PID namespace"),
    ("setns-pid-1", attacks.SETNS, lambda ctx: ["1"], True, "CAP_SYS_ADMIN, but /proc/1 is its own init"),
    (
        "setns-host-process",
        attacks.SETNS,
        lambda ctx: [str(ctx["host_sleep"])],
        False,
        "host processes are not in its /proc",
    ),
]


@pytest.fixture(scope="module")
def ctx():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        with private_root() as n:
            n("run", "plain", "--", "sleep", "600")
            n("run", "priv", "--privileged", "--", "sleep", "600")
            yield {
                "nsbox": n,
                "host_sleep": sleeper.pid,
                "devices": attacks.host_block_and_char_devices(),
                "plain": n.pid("plain"),
                "priv": n.pid("priv"),
            }
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("name,program,args,privileged_succeeds,why", TABLE, ids=[row[0] for row in TABLE])
def test_what_privileged_adds(ctx, name, program, args, privileged_succeeds, why):
    n = ctx["nsbox"]
    plain = attempt(n, "plain", program, *args(ctx))
    priv = attempt(n, "priv", program, *args(ctx))
    print(f"{name:22} default: {plain:40.40} privileged: {priv}  ({why})")
    assert plain.startswith("FAILED"), plain
    assert priv.startswith("SUCCEEDED") == privileged_succeeds, priv
    assert not [d for d in os.listdir("/dev") if d.startswith("nsbx-")], "an attack left a node in the host's /dev"


def test_privileged_sees_the_hosts_dev_and_writable_sys_and_proc_sys(ctx):
    mounts = {}
    with open(f"/proc/{ctx['priv']}/mountinfo") as f:
        for line in f:
            fields = line.split()
            mounts[fields[4]] = fields[5].split(",")
    assert "rw" in mounts["/sys"] and "rw" in mounts["/proc"]
    assert "/proc/sys" not in mounts and "/proc/kcore" not in mounts and "/sys/firmware" not in mounts
    listed = ctx["nsbox"]("exec", "priv", "--", "ls", "/dev").stdout.split()
    assert set(os.listdir("/dev")) - {"pts", "shm", "mqueue"} <= set(listed)
    with open(f"/proc/{ctx['plain']}/mountinfo") as f:
        plain = {line.split()[4]: line.split()[5] for line in f}
    assert plain["/sys"].startswith("ro") and plain["/proc/sys"].startswith("ro")


def test_privileged_changes_stay_in_its_pod_and_its_copy_of_the_files(ctx):
    n = ctx["nsbox"]
    fd, path = tempfile.mkstemp(prefix="nsbx-victim-", dir="/var/tmp")
    try:
        os.write(fd, b"original")
        os.close(fd)
        assert attempt(n, "priv", attacks.WRITE_FILE, path, "pwned").startswith("SUCCEEDED")
        with open(path) as f:
            assert f.read() == "original"
    finally:
        os.unlink(path)
    host = os.uname().nodename
    attempt(n, "priv", attacks.SET_HOSTNAME)
    attempt(n, "priv", attacks.IP_LINK_ADD)
    assert os.uname().nodename == host
    assert "nsbxatk0" in attacks.ip_links(ctx["priv"])
    assert subprocess.run(["ip", "link", "show", "nsbxatk0"], capture_output=True).returncode != 0
    assert subprocess.run(["findmnt", "/mnt"], capture_output=True).returncode != 0
