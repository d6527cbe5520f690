"""`nsbox doctor`: does this machine have what nsbox needs? Says what is missing and how to fix it."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

Check = Callable[[], tuple[bool, str, str]]  # (ok, what was found, how to fix it)


def _kernel() -> tuple[bool, str, str]:
    release = platform.release()
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return False, f"kernel {release}", "nsbox needs Linux >= 5.10"
    return (major, minor) >= (5, 10), f"kernel {release}", "nsbox needs Linux >= 5.10: upgrade the kernel"


def _root() -> tuple[bool, str, str]:
    return os.geteuid() == 0, f"euid {os.geteuid()}", "run nsbox as root (sudo nsbox ...)"


def _namespaces() -> tuple[bool, str, str]:
    missing = [ns for ns in ("net", "ipc", "uts", "pid", "mnt", "cgroup") if not os.path.exists(f"/proc/self/ns/{ns}")]
    return (
        not missing,
        "namespaces: " + ("all present" if not missing else "missing " + ", ".join(missing)),
        "enable CONFIG_NAMESPACES and the missing namespace types in the kernel",
    )


def _cgroups() -> tuple[bool, str, str]:
    from nsbox import cgroups
    from nsbox.errors import NsboxError

    try:
        cg = cgroups.detect()
    except NsboxError as e:
        return False, str(e), "mount cgroup2 at /sys/fs/cgroup (or the v1 controllers)"
    missing = cg.missing_controllers()
    mode = "v2 (unified)" if cg.version == 2 else ("v1 (hybrid)" if cg.hybrid else "v1")
    found = f"cgroup {mode}" + (
        f", missing controllers: {', '.join(missing)}" if missing else ", controllers cpu memory pids available"
    )
    return not missing, found, "enable the missing controllers (cgroup_enable=... on the kernel command line)"


def _overlay() -> tuple[bool, str, str]:
    with open("/proc/filesystems") as f:
        fs = f.read()
    ok = "overlay" in fs
    if not ok:
        try:
            import subprocess

            subprocess.run(["modprobe", "overlay"], check=False, capture_output=True)
            with open("/proc/filesystems") as f:
                ok = "overlay" in f.read()
        except OSError:
            pass
    return ok, "overlayfs " + ("available" if ok else "missing"), "modprobe overlay (CONFIG_OVERLAY_FS)"


def _skopeo() -> tuple[bool, str, str]:
    """Images are fetched and loaded through skopeo (docs/images.md, "Transport")."""
    import shutil

    path = shutil.which("skopeo")
    return (
        bool(path),
        f"skopeo {'at ' + path if path else 'missing: no image can be pulled or loaded'}",
        ("apt-get install skopeo (pods without images work without it)"),
    )


def _pidfd() -> tuple[bool, str, str]:
    from nsbox import native

    try:
        fd = native.pidfd_open(os.getpid())
    except OSError as e:
        return False, f"pidfd_open failed: {e.strerror}", "a kernel >= 5.3 has pidfds"
    if fd is None:
        return True, "pidfd: not in this kernel (falling back to checked PIDs)", ""
    os.close(fd)
    return True, "pidfd available", ""


def _user_namespaces() -> tuple[bool, str, str]:
    """Only pods with hostUsers: false need them (docs/security.md, section 14): a finding, not a failure.
    tmpfs (/dev/shm here) takes idmapped mounts from Linux 6.3 on: pod directories under a root on
    tmpfs (/run/nsbox), Memory emptyDirs and configMap/secret volumes need it."""
    from nsbox import userns

    why = userns.probe("/")
    if why is not None:
        return True, f"hostUsers: false unavailable: {why} (other pods are unaffected)", ""
    if userns.probe("/dev/shm") is not None:
        return (
            True,
            "hostUsers: false available, but tmpfs cannot be mounted idmapped (Linux < 6.3): keep --root on a "
            "disk file system, and give such pods no Memory emptyDir, configMap, secret or projected volume",
            "",
        )
    return True, "user namespaces and idmapped mounts available (hostUsers: false)", ""


def _capabilities() -> tuple[bool, str, str]:
    with open("/proc/self/status") as f:
        eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    need = {21: "SYS_ADMIN", 12: "NET_ADMIN", 5: "KILL", 7: "SETUID", 18: "SYS_CHROOT"}
    missing = [n for bit, n in need.items() if not eff >> bit & 1]
    return (
        not missing,
        "capabilities: " + ("CAP_SYS_ADMIN and friends held" if not missing else "missing " + ", ".join(missing)),
        "run as real root, not in an unprivileged container",
    )


def _native() -> tuple[bool, str, str]:
    try:
        from nsbox import native
    except ImportError as e:
        return False, f"native module: {e}", "reinstall nsbox (sudo ./setup.sh demo) so csrc/ is compiled"
    for program, source in ((native.INIT_PROGRAM, "csrc/init.c"), (native.IDLE_PROGRAM, "csrc/idle.c")):
        if not os.access(program, os.X_OK):
            return (
                False,
                f"native module loaded, but {program} is missing",
                f"reinstall nsbox (sudo ./setup.sh demo) so {source} is compiled",
            )
    return True, "native module, nsbox-init and nsbox-idle loaded", ""


def _seccomp() -> tuple[bool, str, str]:
    """The libseccomp module that compiles profiles, and a kernel that takes filters (docs/security.md)."""
    try:
        from nsbox._seccomp import lib
    except ImportError as e:
        return False, f"seccomp: {e}", "apt-get install libseccomp-dev, then reinstall nsbox (sudo ./setup.sh demo)"
    with open("/proc/self/status") as f:
        if not any(line.startswith("Seccomp:") for line in f):
            return False, "seccomp: the kernel has no seccomp filters", "a kernel built with CONFIG_SECCOMP_FILTER"
    v = lib.seccomp_version()
    return True, f"seccomp filters, libseccomp {v.major}.{v.minor}.{v.micro}", ""


CHECKS: list[tuple[str, Check]] = [
    ("root", _root),
    ("kernel", _kernel),
    ("native", _native),
    ("seccomp", _seccomp),
    ("namespaces", _namespaces),
    ("cgroups", _cgroups),
    ("overlayfs", _overlay),
    ("skopeo", _skopeo),
    ("pidfd", _pidfd),
    ("user namespaces", _user_namespaces),
    ("capabilities", _capabilities),
]


def run(root: str) -> int:
    failed = 0
    for name, check in CHECKS:
        try:
            ok, found, fix = check()
        except Exception as e:  # a broken probe is a finding, not a crash
            ok, found, fix = False, f"{name}: check failed: {e}", ""
        print(f"[{'ok' if ok else 'FAIL':>4}] {found}")
        if not ok:
            failed += 1
            if fix:
                print(f"       fix: {fix}")
    print(f"state root: {root}")
    print("everything nsbox needs is here" if not failed else f"{failed} problem(s) found")
    return 0 if not failed else 1
