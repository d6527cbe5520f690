"""`hostUsers: false`: the pod's own user namespace, seen from outside (docs/security.md, "User namespaces").

Observers are the kernel's: /proc/PID/uid_map, gid_map and status, the owner of a
namespace (the NS_GET_USERNS ioctl on /proc/PID/ns/*), stat of the files on the host,
and util-linux's nsenter for a process that escaped its container's mount namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

import pytest
import yaml
from conftest import Nsbox, pod, private_root, wait_for

NS_GET_USERNS = 0xB701
RANGE = 65536
POOL = "/run/nsbox-userns/ranges"


@pytest.fixture
def nsbox():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root() as n:
        yield n


def apply(n: Nsbox, *docs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
    return n("apply", "-f", "-", input=yaml.safe_dump_all(docs), check=check)


def userns_pod(name: str, *command: str, volumes=(), mounts=(), security=None, **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "app", "command": list(command) or ["sleep", "600"]}
    if mounts:
        c["volumeMounts"] = list(mounts)
    if security:
        c["securityContext"] = security
    if volumes:
        spec["volumes"] = list(volumes)
    return pod(name, c, hostUsers=False, **spec)


def id_map(pid: int, which: str) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/{which}") as f:
        lines = f.read().split("\n")
    inside, outside, count = (int(x) for x in lines[0].split())
    assert lines[1:] == [""], lines
    return inside, outside, count


def status_ids(pid: int, key: str) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(key)


def owner_inode(pid: int, ns: str) -> int:
    """The inode of the user namespace that owns namespace `ns` of process `pid`."""
    fd = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def exec_sh(n: Nsbox, name: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return n("exec", name, "--", "sh", "-c", script, check=check)


@pytest.mark.cgroupv2  # nothing here depends on cgroup v1: also run in the pure-v2 VM
def test_root_inside_is_a_range_of_65536_host_ids_and_owns_the_pod_namespaces(nsbox):
    apply(nsbox, userns_pod("u"))
    pid = nsbox.pid("u")
    inside, first, count = id_map(pid, "uid_map")
    assert (inside, count) == (0, RANGE)
    assert first >= RANGE and first % RANGE == 0  # the host's own 0..65535 are never handed out
    assert id_map(pid, "gid_map") == (0, first, RANGE)
    # root inside is that host ID outside, every one of its real, effective, saved and fs IDs
    assert status_ids(pid, "Uid") == [first] * 4
    assert status_ids(pid, "Gid") == [first] * 4
    own = os.stat(f"/proc/{pid}/ns/user").st_ino
    assert own != os.stat("/proc/self/ns/user").st_ino
    # net, IPC and UTS belong to the pod's user namespace: its root's capabilities hold there
    for ns in ("net", "ipc", "uts"):
        assert owner_inode(pid, ns) == own, ns
    # the mount namespace stays the host's: root inside can never mount (see the SYS_ADMIN test)
    assert owner_inode(pid, "mnt") == os.stat("/proc/self/ns/user").st_ino
    # exec joins it as well
    out = exec_sh(nsbox, "u", "id -u; cat /proc/self/uid_map").stdout.split()
    assert out == ["0", "0", str(first), str(RANGE)]
    # the pod's /etc files (their tmpfs is the pod root's, no ID mapping needed) are root's, writable
    out = exec_sh(nsbox, "u", "stat -c %u:%g /etc/hosts /etc/hostname && echo 10.9.9.9 x >> /etc/hosts").stdout
    assert out.split() == ["0:0", "0:0"]
    # and nsbox says so
    assert nsbox.inspect("u")["sandbox"]["userNamespace"] == {"uidMap": [0, first, RANGE], "gidMap": [0, first, RANGE]}
    assert f"User Namespace:  0-65535 -> host IDs {first}-{first + RANGE - 1}" in nsbox("describe", "pod", "u").stdout


def test_two_pods_hold_disjoint_ranges_and_delete_frees_them(nsbox):
    apply(nsbox, userns_pod("a"), userns_pod("b"))
    firsts = [id_map(nsbox.pid(p), "uid_map")[1] for p in ("a", "b")]
    assert abs(firsts[0] - firsts[1]) >= RANGE
    for f in firsts:
        assert os.path.exists(os.path.join(POOL, str(f)))
    nsbox("delete", "pod", "a", "b")
    for f in firsts:
        assert not os.path.exists(os.path.join(POOL, str(f)))


def test_ranges_are_host_wide_across_roots(nsbox):
    apply(nsbox, userns_pod("a"))
    with private_root() as other:
        apply(other, userns_pod("a"))
        assert id_map(nsbox.pid("a"), "uid_map")[1] != id_map(other.pid("a"), "uid_map")[1]


def test_a_range_is_freed_after_its_watcher_was_killed(nsbox):
    apply(nsbox, userns_pod("u"))
    first = id_map(nsbox.pid("u"), "uid_map")[1]
    os.kill(nsbox.inspect("u")["watcher"]["pid"], signal.SIGKILL)
    nsbox("delete", "pod", "u")  # a new watcher adopts the pod and tears it down
    assert not os.path.exists(os.path.join(POOL, str(first)))


def test_gc_frees_the_range_of_a_pod_that_is_gone(nsbox):
    """A range whose pod state is gone (a crash between allocation and cleanup) is reclaimed."""
    apply(nsbox, userns_pod("u"))  # the pool exists from here on
    name = os.path.join(POOL, str(32767 * RANGE))
    assert not os.path.exists(name)
    with open(name, "w") as f:
        f.write(f'{{"first":"{32767 * RANGE}","root":"{nsbox.root}","uid":"gone","namespace":"default","name":"x"}}')
    out = nsbox("gc").stdout
    assert f"user namespace range {32767 * RANGE}+65536 (pod gone): released" in out
    assert not os.path.exists(name)
    assert nsbox.pod("u")["status"]["phase"] == "Running"  # a live pod keeps its range
    assert os.path.exists(os.path.join(POOL, str(id_map(nsbox.pid("u"), "uid_map")[1])))


def test_a_restarted_container_gets_the_same_mapping_and_idmapped_volumes(nsbox):
    """The watcher sleeps as nsbox-idle while the container runs (1 s, more than its 0.5 s of
    idleness) and is exec'd back to restart it: the range survives that handoff."""
    apply(
        nsbox,
        pod(
            "u",
            {
                "name": "app",
                "command": ["sh", "-c", "id -u >> /data/runs; sleep 1; exit 1"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            hostUsers=False,
            volumes=[{"name": "data", "emptyDir": {}}],
            annotations={"nsbox.io/backoff-base-seconds": "0.5", "nsbox.io/backoff-max-seconds": "1"},
        ),
    )
    runs = os.path.join(nsbox.root, "pods", nsbox.uid("u"), "volumes", "data", "runs")

    def two_runs() -> bool:
        with contextlib.suppress(FileNotFoundError), open(runs) as f:
            return f.read().split()[:2] == ["0", "0"]
        return False

    wait_for(two_runs, timeout=30, what="the container to run twice")
    assert os.stat(runs).st_uid == 0


def test_root_inside_writes_an_emptydir_file_the_host_sees_owned_by_0(nsbox):
    apply(
        nsbox,
        userns_pod(
            "u",
            "sh",
            "-c",
            "echo hi > /data/f && mkdir /data/d && touch /data/d/g && sleep 600",
            volumes=[{"name": "data", "emptyDir": {}}],
            mounts=[{"name": "data", "mountPath": "/data"}],
        ),
    )
    uid = nsbox.uid("u")
    data = os.path.join(nsbox.root, "pods", uid, "volumes", "data")
    wait_for(lambda: os.path.exists(os.path.join(data, "d", "g")), what="the container's files")
    for path in ("f", "d", "d/g"):
        st = os.stat(os.path.join(data, path))
        assert (st.st_uid, st.st_gid) == (0, 0), path


def test_a_non_root_user_inside_is_the_same_offset_into_the_range(nsbox):
    apply(
        nsbox,
        userns_pod(
            "u",
            "sh",
            "-c",
            "touch /data/f && sleep 600",
            volumes=[{"name": "data", "emptyDir": {}}],
            mounts=[{"name": "data", "mountPath": "/data"}],
            securityContext={"runAsUser": 1000, "runAsGroup": 2000},
        ),
    )
    pid = nsbox.pid("u")
    first = id_map(pid, "uid_map")[1]
    assert status_ids(pid, "Uid") == [first + 1000] * 4
    assert status_ids(pid, "Gid") == [first + 2000] * 4
    data = os.path.join(nsbox.root, "pods", nsbox.uid("u"), "volumes", "data", "f")
    wait_for(lambda: os.path.exists(data), what="the container's file")
    st = os.stat(data)
    assert (st.st_uid, st.st_gid) == (1000, 2000)  # idmapped: the IDs it has inside


def test_host_path_files_keep_their_owners_inside_and_out(nsbox):
    host = tempfile.mkdtemp(prefix="nsbx-userns-")
    try:
        secret = os.path.join(host, "root-only")
        with open(secret, "w") as f:
            f.write("s3cret\n")
        os.chmod(secret, 0o600)
        other = os.path.join(host, "other")
        with open(other, "w") as f:
            f.write("x")
        os.chown(other, 1234, 1234)
        apply(
            nsbox,
            userns_pod(
                "u",
                volumes=[{"name": "h", "hostPath": {"path": host}}],
                mounts=[{"name": "h", "mountPath": "/h"}],
            ),
        )
        out = exec_sh(nsbox, "u", "cat /h/root-only; stat -c %u:%g /h/root-only /h/other; echo w > /h/written")
        assert out.stdout.split() == ["s3cret", "0:0", "1234:1234"]
        st = os.stat(os.path.join(host, "written"))
        assert (st.st_uid, st.st_gid) == (0, 0)
    finally:
        nsbox("delete", "pod", "u", "--grace-period", "0", "--force", check=False)
        shutil.rmtree(host)


def test_the_root_and_dev_shm_are_writable_and_roots_files_are_roots(nsbox):
    apply(nsbox, userns_pod("u"))
    script = (
        "stat -c %u:%g / /etc/passwd /bin/sh; echo x > /etc/nsbox-userns-test && mkdir /nsbox-userns-dir"
        " && touch /tmp/t /dev/shm/s /etc/hosts && echo ok; /bin/true && echo ran;"
        " stat -c %u:%g:%a /dev/termination-log && echo why > /dev/termination-log && echo wrote"
    )
    # The termination message file (on the pod's scratch tmpfs, bound without an ID mapping)
    # is root's inside, mode 0666 as the kubelet makes it.
    out = exec_sh(nsbox, "u", script).stdout.split()
    assert out == ["0:0", "0:0", "0:0", "ok", "ran", "0:0:666", "wrote"]
    # the writes stayed in the container's upper layer
    assert not os.path.exists("/etc/nsbox-userns-test") and not os.path.exists("/nsbox-userns-dir")


PING_AND_BIND_80 = r"""
import os, socket, struct, sys
ok = []
try:
    s = socket.socket(); s.bind(("127.0.0.1", 80)); ok.append("bind80")
except OSError as e:
    print("bind:", e.strerror)
try:
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(5)
    body = struct.pack("!BBHHH", 8, 0, 0, 0x4e53, 1) + b"nsbox"
    words = sum(struct.unpack("!%dH" % (len(body) // 2), body[: len(body) // 2 * 2])) + (body[-1] << 8)
    words = (words >> 16) + (words & 0xFFFF); words += words >> 16
    body = body[:2] + struct.pack("!H", ~words & 0xFFFF) + body[4:]
    r.sendto(body, ("127.0.0.1", 0))
    while True:
        data = r.recv(1024)
        if data[20] == 0 and data[24:26] == b"\x4e\x53":
            ok.append("echo-reply"); break
except OSError as e:
    print("icmp:", e.strerror)
print(" ".join(ok) or "none")
"""


def test_root_inside_binds_port_80_and_pings_with_its_namespaced_capabilities(nsbox):
    apply(
        nsbox,
        userns_pod("u"),
        userns_pod("without", security={"capabilities": {"drop": ["NET_BIND_SERVICE", "NET_RAW"]}}),
    )
    assert nsbox("exec", "u", "--", "python3", "-c", PING_AND_BIND_80).stdout.split()[-2:] == ["bind80", "echo-reply"]
    # the same program without the two capabilities: they, not the environment, let it through
    assert nsbox("exec", "without", "--", "python3", "-c", PING_AND_BIND_80).stdout.split()[-1] == "none"


MOUNT_TMPFS = (
    "import ctypes; l = ctypes.CDLL(None, use_errno=True); "
    "print(l.mount(b'x', b'/mnt', b'tmpfs', 0, None), ctypes.get_errno())"
)


def test_sys_admin_inside_still_cannot_mount(nsbox):
    """capabilities.add SYS_ADMIN holds in the pod's user namespace, not over its mount namespace."""
    apply(
        nsbox,
        userns_pod("u", security={"capabilities": {"add": ["SYS_ADMIN"]}}),
        pod(
            "host-users",
            {"name": "app", "command": ["sleep", "600"], "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        ),
    )
    assert nsbox("exec", "host-users", "--", "python3", "-c", MOUNT_TMPFS).stdout.split() == ["0", "0"]
    assert nsbox("exec", "u", "--", "python3", "-c", MOUNT_TMPFS).stdout.split() == ["-1", "1"]  # EPERM


def test_a_breakout_lands_as_nobody_on_the_host(nsbox):
    """A process that leaves the container's mount and PID namespaces but keeps its credentials
    (nsenter into only the pod's user namespace, from the host's) can do nothing as root."""
    apply(nsbox, userns_pod("u"))
    pid = nsbox.pid("u")
    host = tempfile.mkdtemp(prefix="nsbx-userns-")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        secret = os.path.join(host, "secret")
        with open(secret, "w") as f:
            f.write("s3cret")
        os.chmod(secret, 0o600)
        os.chmod(host, 0o755)
        script = (
            f"id -u; cat {secret} || echo read-refused; touch {host}/planted || echo write-refused; "
            f"kill {sleeper.pid} || echo kill-refused; chown 0 {secret} 2>/dev/null || echo chown-refused"
        )
        p = subprocess.run(
            ["nsenter", "--target", str(pid), "--user", "--", "sh", "-c", script], capture_output=True, text=True
        )
        assert p.stdout.split() == ["0", "read-refused", "write-refused", "kill-refused", "chown-refused"], p
        assert sleeper.poll() is None
        assert os.listdir(host) == ["secret"]
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(host)


def test_host_namespaces_are_refused_with_the_api_servers_words(nsbox):
    p = apply(nsbox, userns_pod("u", hostNetwork=True, hostIPC=True), check=False)
    assert p.returncode == 1
    assert "spec.hostNetwork: Forbidden: when `hostUsers` is false" in p.stderr
    assert "spec.hostIPC: Forbidden: when `hostUsers` is false" in p.stderr
    assert "Traceback" not in p.stderr
    assert nsbox("get", "pods", "-o", "name").stdout == ""


def test_a_file_system_without_idmapped_mounts_fails_at_create_with_nothing_left(nsbox):
    with contextlib.ExitStack():
        p = apply(
            nsbox,
            userns_pod(
                "u",
                volumes=[{"name": "p", "hostPath": {"path": "/proc/driver"}}],
                mounts=[{"name": "p", "mountPath": "/p"}],
            ),
            check=False,
        )
    assert p.returncode == 1
    assert p.stderr.startswith('error: hostUsers: false: hostPath volume "p" (/proc/driver) cannot be mounted idmapped')
    assert len(p.stderr.splitlines()) == 1
    assert os.listdir(os.path.join(nsbox.root, "pods")) == []
    assert not any((r.get("root") if isinstance(r, dict) else None) == nsbox.root for r in _pool_records())


def _pool_records() -> list[Any]:
    import json

    out = []
    for e in os.listdir(POOL) if os.path.isdir(POOL) else []:
        with contextlib.suppress(OSError, ValueError), open(os.path.join(POOL, e)) as f:
            out.append(json.load(f))
    return out


@pytest.mark.cgroupv2
def test_an_image_pod_runs_with_its_layers_idmapped(nsbox_images, busybox_image):
    """The image's files (root's in the layers) are root's inside; writes go to the upper layer."""
    n = nsbox_images
    doc = pod(
        "img",
        {"name": "app", "image": busybox_image.ref, "command": ["sleep", "600"]},
        hostUsers=False,
    )
    apply(n, doc)
    pid = n.pid("img")
    first = id_map(pid, "uid_map")[1]
    assert status_ids(pid, "Uid") == [first] * 4
    out = n("exec", "img", "--", "sh", "-c", "stat -c %u:%g / /bin; echo x > /bin/new && echo wrote; id -u").stdout
    assert out.split() == ["0:0", "0:0", "wrote", "0"]


def _root_only_device() -> str:
    """A host device node that only its owner and group may open (a disk, most often)."""
    import stat

    for name in sorted(os.listdir("/dev")):
        path = os.path.join("/dev", name)
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)) and not st.st_mode & 0o006:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # host root can: the control
                return path
    pytest.skip("no device here that only its owner and group may open")


def test_privileged_with_host_users_false_holds_every_capability_only_in_the_pods_namespace(nsbox):
    device = _root_only_device()
    apply(nsbox, userns_pod("u", security={"privileged": True}))
    script = f"grep CapEff /proc/self/status; head -c1 {device} >/dev/null 2>&1 || echo device-refused"
    out = exec_sh(nsbox, "u", script).stdout.split()
    assert out[0] == "CapEff:" and int(out[1], 16) & (1 << 21)  # CAP_SYS_ADMIN, in the pod's user namespace
    assert out[2:] == ["device-refused"]
    assert nsbox("exec", "u", "--", "python3", "-c", MOUNT_TMPFS).stdout.split() == ["-1", "1"]


def test_configmap_volumes_and_subpaths_are_idmapped_too(nsbox):
    nsbox("create", "configmap", "conf", "--from-literal=greeting=hello")
    apply(
        nsbox,
        userns_pod(
            "u",
            volumes=[{"name": "conf", "configMap": {"name": "conf"}}, {"name": "data", "emptyDir": {}}],
            mounts=[
                {"name": "conf", "mountPath": "/conf"},
                {"name": "data", "mountPath": "/sub", "subPath": "a/b"},
            ],
        ),
    )
    out = exec_sh(
        nsbox, "u", "cat /conf/greeting; echo; stat -L -c %u /conf/greeting; touch /sub/f && stat -c %u /sub/f"
    )
    assert out.stdout.split() == ["hello", "0", "0"]
    data = os.path.join(nsbox.root, "pods", nsbox.uid("u"), "volumes", "data", "a", "b", "f")
    assert os.stat(data).st_uid == 0


def test_blocks_given_to_host_users_in_etc_subuid_are_never_handed_out(tmp_path):
    from nsbox import userns

    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\nbob:231072:1\n# junk\nbroken\ncarol:0:0\n")
    subgid = tmp_path / "subgid"
    subgid.write_text("alice:655360:131072\n")
    # 100000..165535 overlaps blocks 1 and 2; 231072 is in block 3; 655360.. is blocks 10 and 11
    assert userns.subid_blocks((str(subuid), str(subgid), str(tmp_path / "missing"))) == {1, 2, 3, 10, 11}


def test_doctor_says_whether_hostusers_false_can_work_here(nsbox):
    """This kernel (6.18, ext4 root) has both: doctor says so, with a namespace of its own and no range taken."""
    before = sorted(os.listdir(POOL)) if os.path.isdir(POOL) else []
    assert "[  ok] user namespaces and idmapped mounts available (hostUsers: false)" in nsbox("doctor").stdout
    assert (sorted(os.listdir(POOL)) if os.path.isdir(POOL) else []) == before


def test_the_pause_of_a_shared_pid_namespace_is_the_pods_root_too(nsbox):
    apply(nsbox, userns_pod("u", shareProcessNamespace=True))
    pid = nsbox.pid("u")
    first = id_map(pid, "uid_map")[1]
    pid_ns = os.stat(f"/proc/{pid}/ns/pid").st_ino

    def pid_1_of(p: int) -> bool:
        with open(f"/proc/{p}/status") as f:
            nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        return nspid[-1] == "1" and os.stat(f"/proc/{p}/ns/pid").st_ino == pid_ns

    watcher = nsbox.inspect("u")["watcher"]["pid"]
    with open(f"/proc/{watcher}/task/{watcher}/children") as f:
        pauses = [c for c in (int(x) for x in f.read().split()) if pid_1_of(c)]
    assert len(pauses) == 1
    assert status_ids(pauses[0], "Uid") == [first] * 4
    assert os.stat(f"/proc/{pauses[0]}/ns/user").st_ino == os.stat(f"/proc/{pid}/ns/user").st_ino


def test_run_userns_is_host_users_false(nsbox):
    nsbox("run", "--userns", "u", "--", "sleep", "600")
    pid = nsbox.pid("u")
    assert id_map(pid, "uid_map")[0::2] == (0, RANGE)
    assert nsbox.pod("u")["spec"]["hostUsers"] is False
    p = nsbox("run", "--userns", "--network", "host", "h", "--", "true", check=False)
    assert (p.returncode, p.stderr) == (
        1,
        "error: --userns cannot be used with --network host (a user namespace needs the pod's own network)\n",
    )


def test_directories_nsbox_makes_for_mount_points_and_workdir_are_the_pods_roots(nsbox):
    apply(
        nsbox,
        pod(
            "u",
            {
                "name": "app",
                "command": ["sleep", "600"],
                "workingDir": "/nsbox-wd/here",
                "volumeMounts": [{"name": "data", "mountPath": "/nsbox-mnt/a/b"}],
            },
            hostUsers=False,
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    script = "stat -c %u:%g /nsbox-mnt /nsbox-mnt/a /nsbox-wd /nsbox-wd/here /etc; touch /nsbox-mnt/a/f && pwd"
    assert exec_sh(nsbox, "u", script).stdout.split() == ["0:0"] * 5 + ["/nsbox-wd/here"]


def test_a_symlink_in_the_image_never_leads_the_ownership_fix_to_the_host(nsbox):
    """An image whose /link points at a host directory: the link is followed inside the root
    (docs/security.md, section 12), where it leads nowhere, so the container cannot start; the
    host directory is neither written nor given to the pod's root."""
    host = tempfile.mkdtemp(prefix="nsbx-userns-host-")
    image = tempfile.mkdtemp(prefix="nsbx-userns-image-")
    try:
        os.makedirs(os.path.join(host, "sub"))
        os.makedirs(os.path.join(image, "bin"))
        shutil.copy("/bin/busybox", os.path.join(image, "bin", "busybox"))
        os.symlink("busybox", os.path.join(image, "bin", "sleep"))
        os.symlink(host, os.path.join(image, "link"))
        apply(
            nsbox,
            pod(
                "u",
                {
                    "name": "app",
                    "image": image,
                    "command": ["/bin/sleep", "600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/link/sub/vol"}],
                },
                hostUsers=False,
                volumes=[{"name": "data", "emptyDir": {}}],
            ),
        )
        last = wait_for(
            lambda: nsbox.container_state("u", "app")["lastState"].get("terminated"), what="the failed start"
        )
        assert last["reason"] == "StartError" and "/link/sub/vol" in last["message"], last
        st = os.stat(os.path.join(host, "sub"))
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert os.listdir(os.path.join(host, "sub")) == []
    finally:
        nsbox("delete", "pod", "u", "--grace-period", "0", "--force", check=False)
        shutil.rmtree(host)
        shutil.rmtree(image)
