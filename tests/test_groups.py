"""Groups, sysctls and /etc/hosts of manifest pods, on the real kernel (README "Groups, sysctls and /etc/hosts").

Observers that are not nsbox: /proc/PID/status (Groups:), stat of volume
files, `nsenter -n/-i sysctl`, /etc/hosts and /etc/hostname through
/proc/PID/root, `nsenter -u hostname`.
"""

from __future__ import annotations

import os
import stat
import subprocess
from typing import Any

import pytest
import yaml
from conftest import pod, wait_for
from test_network import bridge  # noqa: F401  (a fixture)

# Runs until SIGTERM, which it obeys at once.
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
GROUPS_TO = "grep ^Groups: /proc/self/status > {}"


def container(name: str, command: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": command, **fields}


def apply(nsbox, *docs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
    return nsbox("apply", "-f", "-", input=yaml.safe_dump_all(docs, sort_keys=False), check=check)


def groups_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as f:
        return {int(g) for line in f if line.startswith("Groups:") for g in line.split()[1:]}


def groups_in(line: str) -> set[int]:
    return {int(g) for g in line.split()[1:]}


def in_container(pid: int, path: str) -> str:
    return f"/proc/{pid}/root{path}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def nsenter(pid: int, flags: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", "-t", str(pid), flags, *cmd], capture_output=True, text=True, check=True
    ).stdout.strip()


# ---------------------------------------------------------------- groups

NAMELESS_UID = 54321  # in no /etc/passwd: no groups of the host's /etc/group added
IDS = {"runAsUser": NAMELESS_UID, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000, 4001]}


def test_every_process_of_a_container_gets_the_gid_fs_group_and_supplemental_groups(nsbox, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)  # the hooks run as NAMELESS_UID
    main = container(
        "main",
        SLEEP,
        volumeMounts=[{"name": "out", "mountPath": "/out"}],
        lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", GROUPS_TO.format("/out/post")]}},
            "preStop": {"exec": {"command": ["sh", "-c", GROUPS_TO.format("/out/pre")]}},
        },
    )
    init = container(
        "init", ["sh", "-c", GROUPS_TO.format("/out/init")], volumeMounts=[{"name": "out", "mountPath": "/out"}]
    )
    apply(
        nsbox,
        pod(
            "ids",
            main,
            initContainers=[init],
            securityContext=IDS,
            volumes=[{"name": "out", "hostPath": {"path": str(out)}}],
        ),
    )
    want = {3000, 2000, 4000, 4001}
    pid = nsbox.pid("ids", "main")
    assert groups_of(pid) == want
    assert groups_in(read(out / "init")) == want
    assert groups_in(wait_for(lambda: (out / "post").exists() and read(out / "post"), what="postStart")) == want
    exec_status = nsbox("exec", "ids", "--", "grep", "^Groups:", "/proc/self/status").stdout
    assert groups_in(exec_status) == want
    nsbox("delete", "pod", "ids")
    assert groups_in(read(out / "pre")) == want


def test_the_status_shows_the_user_as_kubelet_1_31_does(nsbox):
    apply(nsbox, pod("who", container("c", SLEEP), securityContext=IDS))
    nsbox.pid("who")
    user = nsbox.pod("who")["status"]["containerStatuses"][0]["user"]
    assert user == {"linux": {"uid": NAMELESS_UID, "gid": 3000, "supplementalGroups": [3000, 2000, 4000, 4001]}}


@pytest.fixture
def image_with_users(tmp_path):
    """A directory image holding sh and sleep, and an /etc/passwd and /etc/group of its own."""
    image = tmp_path / "image"
    for tool in ("/bin/sh", "/bin/sleep"):
        real = os.path.realpath(tool)
        ldd = subprocess.run(["ldd", real], capture_output=True, text=True, check=True).stdout
        for path in [real] + [w for w in ldd.split() if w.startswith("/")]:
            target = image / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-L", path, str(target)], check=True)
        if not (image / tool.lstrip("/")).exists():
            (image / "bin").mkdir(exist_ok=True)
            os.symlink(real, image / tool.lstrip("/"))
    (image / "etc").mkdir()
    (image / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (image / "etc/group").write_text(
        "root:x:0:\napp:x:1000:\nvideo:x:44:bob,app\naudio:x:29:app\nstaff:x:50:bob\nadm:x:4:\n"
    )
    return str(image)


@pytest.mark.parametrize("policy, listed", [(None, {44, 29}), ("Merge", {44, 29}), ("Strict", set())])
def test_merge_adds_the_groups_listing_the_user_in_the_containers_etc_group(nsbox, image_with_users, policy, listed):
    sc: dict[str, Any] = {"runAsUser": 1000, "runAsGroup": 1000, "supplementalGroups": [4000]}
    if policy:
        sc["supplementalGroupsPolicy"] = policy
    apply(
        nsbox,
        pod(
            "merge",
            container("c", ["/bin/sh", "-c", "trap 'exit 0' TERM; /bin/sleep 300 & wait"], image=image_with_users),
            securityContext=sc,
        ),
    )
    assert groups_of(nsbox.pid("merge")) == {1000, 4000} | listed
    user = nsbox.pod("merge")["status"]["containerStatuses"][0]["user"]["linux"]
    assert set(user["supplementalGroups"]) == {1000, 4000} | listed


# ---------------------------------------------------------------- fsGroup and volumes


@pytest.mark.parametrize("policy", [None, "OnRootMismatch"])
def test_fs_group_owns_empty_dirs_on_disk_and_in_memory(nsbox, policy):
    sc: dict[str, Any] = {"runAsUser": NAMELESS_UID, "runAsGroup": 3000, "fsGroup": 2000}
    if policy:
        sc["fsGroupChangePolicy"] = policy
    mounts = [{"name": "disk", "mountPath": "/disk"}, {"name": "mem", "mountPath": "/mem"}]
    apply(
        nsbox,
        pod(
            "owned",
            container("c", ["sh", "-c", "touch /disk/f /mem/f; " + SLEEP[2]], volumeMounts=mounts),
            securityContext=sc,
            volumes=[{"name": "disk", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory"}}],
        ),
    )
    pid = nsbox.pid("owned")
    for volume in ("/disk", "/mem"):
        top = os.stat(in_container(pid, volume))
        assert top.st_gid == 2000
        assert top.st_mode & stat.S_ISGID and stat.S_IMODE(top.st_mode) & 0o070 == 0o070
        f = wait_for(
            lambda: os.path.exists(in_container(pid, volume + "/f")) and os.stat(in_container(pid, volume + "/f")),
            what=f"{volume}/f",
        )
        assert (f.st_uid, f.st_gid) == (NAMELESS_UID, 2000)  # the setgid directory gave it the group


def test_without_fs_group_empty_dirs_stay_root_owned(nsbox):
    apply(
        nsbox,
        pod(
            "plain",
            container("c", SLEEP, volumeMounts=[{"name": "d", "mountPath": "/d"}]),
            volumes=[{"name": "d", "emptyDir": {}}],
        ),
    )
    top = os.stat(in_container(nsbox.pid("plain"), "/d"))
    assert top.st_gid == 0 and not top.st_mode & stat.S_ISGID


# ---------------------------------------------------------------- sysctls


def test_sysctls_are_set_in_the_pods_network_and_ipc_namespaces_only(nsbox):
    host = {
        n: subprocess.run(["sysctl", "-n", n], capture_output=True, text=True, check=True).stdout.strip()
        for n in ("net.ipv4.ip_local_port_range", "kernel.shm_rmid_forced", "kernel.msgmax")
    }
    apply(
        nsbox,
        pod(
            "tuned",
            container("c", SLEEP),
            securityContext={
                "sysctls": [
                    {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"},
                    {"name": "kernel.shm_rmid_forced", "value": "1" if host["kernel.shm_rmid_forced"] == "0" else "0"},
                    {"name": "kernel/msgmax", "value": "12345"},
                ]
            },
        ),
    )
    pid = nsbox.pid("tuned")
    assert nsenter(pid, "-n", "sysctl", "-n", "net.ipv4.ip_local_port_range").split() == ["20000", "30000"]
    assert nsenter(pid, "-i", "sysctl", "-n", "kernel.shm_rmid_forced") != host["kernel.shm_rmid_forced"]
    assert nsenter(pid, "-i", "cat", "/proc/sys/kernel/msgmax") == "12345"
    for name, value in host.items():  # the host's are untouched
        assert subprocess.run(["sysctl", "-n", name], capture_output=True, text=True).stdout.strip() == value


def test_a_bridge_pods_sysctls_are_set_after_its_interface_exists(nsbox, bridge):  # noqa: F811
    manifest = pod(
        "eth",
        container("c", SLEEP),
        securityContext={"sysctls": [{"name": "net.ipv4.conf.eth0.accept_local", "value": "1"}]},
    )
    manifest["metadata"]["annotations"] = {"nsbox.io/network": "bridge"}
    apply(nsbox, manifest)
    assert nsenter(nsbox.pid("eth"), "-n", "sysctl", "-n", "net.ipv4.conf.eth0.accept_local") == "1"


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "net.ipv4.no_such_knob",
            "1",
            'error: sysctl "net.ipv4.no_such_knob": this kernel has no /proc/sys/net/ipv4/no_such_knob',
        ),
        (
            "net.ipv4.ip_local_port_range",
            "not numbers",
            'error: sysctl "net.ipv4.ip_local_port_range" = "not numbers": Invalid argument',
        ),
    ],
)
def test_a_sysctl_the_kernel_refuses_fails_the_create_and_leaves_nothing(nsbox, name, value, message):
    p = apply(
        nsbox,
        pod("refused", container("c", SLEEP), securityContext={"sysctls": [{"name": name, "value": value}]}),
        check=False,
    )
    assert p.returncode == 1 and p.stderr.splitlines() == [message], p.stderr
    assert "refused" not in nsbox("get", "pods").stdout + nsbox("get", "pods").stderr
    # (the nsbox fixture checks that no state, mount, cgroup or process is left)


def test_a_sysctl_that_is_not_namespaced_is_refused_before_anything_is_made(nsbox):
    p = apply(
        nsbox,
        pod("global", container("c", SLEEP), securityContext={"sysctls": [{"name": "vm.swappiness", "value": "10"}]}),
        check=False,
    )
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        'error: spec.securityContext.sysctls[0].name: Forbidden: sysctl "vm.swappiness" is not namespaced: '
        "a pod may set only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"
    ]
    assert not os.listdir(os.path.join(nsbox.root, "pods")) if os.path.isdir(os.path.join(nsbox.root, "pods")) else True


# ---------------------------------------------------------------- /etc/hosts and the hostname

ALIASES = [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar"]}, {"ip": "2001:db8::1", "hostnames": ["six"]}]
ALIASES_SECTION = "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar\n2001:db8::1\tsix\n"


def test_host_aliases_end_the_kubelet_format_hosts_file(nsbox):
    apply(nsbox, pod("aliased", container("c", SLEEP), hostAliases=ALIASES))
    assert read(in_container(nsbox.pid("aliased"), "/etc/hosts")) == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "127.0.1.1\taliased\n" + ALIASES_SECTION
    )


def test_a_host_network_pod_gets_the_hosts_file_of_the_host_with_the_aliases(nsbox):
    apply(nsbox, pod("hostnet", container("c", SLEEP), hostNetwork=True, hostAliases=ALIASES))
    assert read(in_container(nsbox.pid("hostnet"), "/etc/hosts")) == (
        "# Kubernetes-managed hosts file (host network).\n" + read("/etc/hosts") + ALIASES_SECTION
    )


def test_a_long_pod_name_gives_a_hostname_cut_as_the_kubelet_cuts_it(nsbox):
    name = "a" * 62 + "-" + "b" * 20  # a valid DNS subdomain of 83 characters; cut: "a" * 62 + "-"
    apply(nsbox, pod(name, container("c", SLEEP)))
    pid = nsbox.pid(name)
    assert nsenter(pid, "-u", "hostname") == "a" * 62
    assert read(in_container(pid, "/etc/hostname")) == "a" * 62 + "\n"
    assert read(in_container(pid, "/etc/hosts")).endswith("127.0.1.1\t" + "a" * 62 + "\n")
