"""`nsbox apply -f` and `delete -f` running real v1 Pod manifests on the real kernel.

Each test applies a manifest and checks one claim with observers that are not
nsbox: /proc/PID/{status,environ,cwd,mountinfo,root}, cgroup files, nsenter,
and files on the host. Pods are polled with deadlines (`wait_for`), never
waited for with bare sleeps.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile
import time
from typing import Any

import pytest
import yaml
from conftest import alive, cgroup_dirs, cgroup_pids, ns_inode, pod, sleeping_fds, wait_for

FAST = {"nsbox.io/backoff-base-seconds": "1", "nsbox.io/backoff-max-seconds": "2"}
# Runs until SIGTERM, which it obeys at once (a plain `sleep` as PID 1 ignores it and waits for SIGKILL).
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]


def then_sleep(script: str) -> list[str]:
    """A shell command that runs `script`, then idles like SLEEP."""
    return ["sh", "-c", f"trap 'exit 0' TERM; {script}; sleep 300 & wait"]


# ---------------------------------------------------------------- manifests


def container(name: str, command: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": command, **fields}


def as_yaml(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def apply(nsbox, *docs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
    return nsbox("apply", "-f", "-", input=as_yaml(*docs), check=check)


# ---------------------------------------------------------------- observers


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def proc_environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)


def in_container(pid: int, path: str) -> str:
    """A file as the container sees it (through its root, from the host)."""
    return f"/proc/{pid}/root{path}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def mount_at(pid: int, target: str) -> dict[str, str]:
    """The mountinfo entry of `target` in the mount namespace of `pid` (the last one wins)."""
    found = {}
    for line in read(f"/proc/{pid}/mountinfo").splitlines():
        left, right = line.split(" - ")
        fields, (fstype, source, super_opts) = left.split(), right.split()[:3]
        if fields[4] == target:
            found = {"options": fields[5], "fstype": fstype, "source": source, "super": super_opts}
    assert found, f"nothing mounted at {target} for pid {pid}"
    return found


def our_bounding_set() -> int:
    """Every capability nsbox itself may hold (a host may withhold some even from root)."""
    return int(proc_status(os.getpid())["CapBnd"], 16)


HOST = os.getpid()  # this test process runs in the host's namespaces


def stays_false(predicate, seconds: float) -> bool:
    """True if `predicate` never holds during `seconds` (an observation window, not a wait)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(0.1)
    return True


def terminated(nsbox, pod_name: str, name: str | None = None, timeout: float = 20) -> dict[str, Any]:
    return wait_for(
        lambda: nsbox.container_state(pod_name, name)["state"].get("terminated"),
        timeout=timeout,
        what=f"container {name or pod_name} to terminate",
    )


def logs(nsbox, pod_name: str, name: str | None = None) -> str:
    args = ["logs", pod_name] + (["-c", name] if name else [])
    return nsbox(*args).stdout


def pod_processes(nsbox, name: str) -> list[int]:
    """Every process in the pod's cgroups, read from the cgroup files."""
    return [p for d in cgroup_dirs(nsbox.uid(name)) for p in cgroup_pids(d)]


def pods_in_root(nsbox) -> list[str]:
    d = os.path.join(nsbox.root, "pods")
    return os.listdir(d) if os.path.isdir(d) else []


def pod_status(nsbox, name: str) -> dict[str, Any]:
    return nsbox.pod(name)["status"]


def status_column(nsbox, name: str) -> str:
    lines = nsbox("get", "pods", name).stdout.splitlines()
    return lines[1].split()[2]


CGROUP_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def cgroup_limits(uid: str, container_name: str = "") -> tuple[int | None, int | None]:
    """(CPU quota in µs per 100 ms period, memory limit in bytes) of a pod or container cgroup; None = unlimited."""
    rel = f"nsbox/pod{uid}" + (f"/{container_name}" if container_name else "")
    if CGROUP_V2:
        quota, period = read(f"/sys/fs/cgroup/{rel}/cpu.max").split()
        memory = read(f"/sys/fs/cgroup/{rel}/memory.max").strip()
        cpu = None if quota == "max" else int(quota) * 100000 // int(period)
        return cpu, None if memory == "max" else int(memory)
    quota = int(read(f"/sys/fs/cgroup/cpu/{rel}/cpu.cfs_quota_us"))
    period = int(read(f"/sys/fs/cgroup/cpu/{rel}/cpu.cfs_period_us"))
    memory = int(read(f"/sys/fs/cgroup/memory/{rel}/memory.limit_in_bytes"))
    return (None if quota < 0 else quota * 100000 // period), (None if memory >= 1 << 62 else memory)


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="nsbx-host-")
    os.chmod(d, 0o777)
    yield d
    subprocess.run(["rm", "-rf", d])


# ---------------------------------------------------------------- apply: documents


def test_multi_document_file_creates_every_pod(nsbox, tmp_path):
    f = tmp_path / "pods.yaml"
    f.write_text(as_yaml(pod("first", container("c", SLEEP)), pod("second", container("c", SLEEP))))
    p = nsbox("apply", "-f", str(f))
    assert p.stdout.splitlines() == ["pod/first created", "pod/second created"]
    for name in ("first", "second"):
        assert alive(nsbox.pid(name))


def test_kind_list_creates_its_items(nsbox):
    items = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [pod("one", container("c", SLEEP)), pod("two", container("c", SLEEP))],
    }
    p = apply(nsbox, items)
    assert p.stdout.splitlines() == ["pod/one created", "pod/two created"]
    names = nsbox("get", "pods", "-o", "name").stdout.split()
    assert sorted(names) == ["pod/one", "pod/two"]


def test_json_manifest_from_stdin(nsbox):
    p = nsbox("apply", "-f", "-", input=json.dumps(pod("from-json", container("c", SLEEP))))
    assert p.stdout.strip() == "pod/from-json created"
    assert alive(nsbox.pid("from-json"))


def test_reapplying_the_same_file_says_unchanged(nsbox, tmp_path):
    f = tmp_path / "pod.yaml"
    f.write_text(as_yaml(pod("same", container("c", SLEEP))))
    nsbox("apply", "-f", str(f))
    uid = nsbox.uid("same")
    assert nsbox("apply", "-f", str(f)).stdout.strip() == "pod/same unchanged"
    assert nsbox.uid("same") == uid


def test_get_output_applied_again_is_unchanged(nsbox):
    manifest = pod(
        "round-trip",
        container("c", SLEEP, env=[{"name": "A", "value": "1"}], resources={"limits": {"memory": "64Mi"}}),
        volumes=[{"name": "v", "emptyDir": {"medium": "Memory"}}],
        annotations=FAST,
    )
    apply(nsbox, manifest)
    nsbox.pid("round-trip")
    for fmt in ("yaml", "json"):
        shown = nsbox("get", "pod", "round-trip", "-o", fmt).stdout
        assert nsbox("apply", "-f", "-", input=shown).stdout.strip() == "pod/round-trip unchanged"


def test_a_different_spec_under_an_existing_name_is_an_error(nsbox):
    apply(nsbox, pod("immutable", container("c", SLEEP)))
    uid = nsbox.uid("immutable")
    p = apply(nsbox, pod("immutable", container("c", ["sleep", "301"])), check=False)
    assert p.returncode == 1
    assert p.stderr.startswith('error: pod "immutable" already exists with a different spec')
    assert nsbox.uid("immutable") == uid


def test_an_invalid_document_reports_every_problem_and_creates_nothing(nsbox):
    good = pod("good", container("c", SLEEP))
    bad = pod(
        "bad",
        container("Web_1", SLEEP),
        {"name": "nocmd"},
        volumes=[{"name": "pv", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    p = apply(nsbox, good, bad, check=False)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 1
    assert len(errors) >= 3, p.stderr
    assert any('spec.containers[0].name: Invalid value: "Web_1"' in e for e in errors)
    assert any("spec.containers[1].command: Required value" in e for e in errors)
    assert any("spec.volumes[0].persistentVolumeClaim" in e for e in errors)
    assert p.stdout == ""
    assert pods_in_root(nsbox) == []
    assert "No resources found" in nsbox("get", "pods").stderr


def test_a_missing_executable_in_one_document_creates_nothing(nsbox):
    p = apply(nsbox, pod("fine", container("c", SLEEP)), pod("typo", container("c", ["slep", "300"])), check=False)
    assert p.returncode == 1
    assert 'error: pod/typo: container "c": executable "slep" not found in $PATH' in p.stderr
    assert p.stdout == "" and pods_in_root(nsbox) == []


def test_cluster_only_fields_get_a_warning_and_are_ignored(nsbox):
    manifest = pod(
        "scheduled",
        container("c", SLEEP, image="busybox"),
        annotations={"nsbox.io/host-root": "true"},  # offline: the image is recorded, not pulled
        nodeSelector={"disk": "ssd"},
        priorityClassName="high",
    )
    p = apply(nsbox, manifest)
    warnings = p.stderr.splitlines()
    assert any(w.startswith("warning: spec.nodeSelector: ") for w in warnings), p.stderr
    assert any(w.startswith("warning: spec.priorityClassName: ") for w in warnings), p.stderr
    assert any(w.startswith("warning: spec.containers[0].image: ") for w in warnings), p.stderr
    assert p.stdout.strip() == "pod/scheduled created"


def test_sub_path_with_dot_dot_is_rejected_before_anything_runs(nsbox):
    mounts = [{"name": "data", "mountPath": "/data", "subPath": "../escape"}]
    p = apply(
        nsbox,
        pod("escape", container("c", SLEEP, volumeMounts=mounts), volumes=[{"name": "data", "emptyDir": {}}]),
        check=False,
    )
    assert p.returncode == 1
    assert 'spec.containers[0].volumeMounts[0].subPath: Invalid value: "../escape"' in p.stderr
    assert pods_in_root(nsbox) == []


EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "examples", "*.yaml")))


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_every_example_applies_runs_and_deletes(nsbox, path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    names = [item["metadata"]["name"] for d in docs for item in (d["items"] if d["kind"] == "List" else [d])]
    p = nsbox("apply", "-f", path)
    assert p.stdout.splitlines() == [f"pod/{n}" + " created" for n in names]
    assert "error:" not in p.stderr
    for name in names:
        wait_for(
            lambda: pod_status(nsbox, name)["phase"] in ("Running", "Succeeded"), timeout=20, what=f"pod {name} to run"
        )
        assert pod_status(nsbox, name)["phase"] != "Failed"
    p = nsbox("delete", "-f", path, "--grace-period", "0")
    assert p.stdout.splitlines() == [f'pod "{n}" deleted' for n in names]
    assert nsbox("get", "pods", "-o", "name").stdout == ""


# ---------------------------------------------------------------- containers


def test_init_containers_run_in_order_to_completion_before_the_containers(nsbox):
    work = [{"name": "work", "mountPath": "/work"}]
    step = "echo {0} >> /work/order; sleep 0.3; echo {0}-done >> /work/order"
    apply(
        nsbox,
        pod(
            "ordered",
            container("main", then_sleep("echo main >> /work/order"), volumeMounts=work),
            initContainers=[
                container("first", ["sh", "-c", step.format("first")], volumeMounts=work),
                container("second", ["sh", "-c", step.format("second")], volumeMounts=work),
            ],
            volumes=[{"name": "work", "emptyDir": {}}],
        ),
    )
    pid = nsbox.pid("ordered", "main")
    wait_for(lambda: "main" in read(in_container(pid, "/work/order")).split(), what="the main container's line")
    order = read(in_container(pid, "/work/order")).split()
    assert order == ["first", "first-done", "second", "second-done", "main"]
    inits = pod_status(nsbox, "ordered")["initContainerStatuses"]
    assert [s["state"]["terminated"]["exitCode"] for s in inits] == [0, 0]


def test_a_failing_init_container_with_restart_never_fails_the_pod(nsbox):
    apply(
        nsbox,
        pod(
            "broken-init",
            container("main", SLEEP),
            restartPolicy="Never",
            initContainers=[container("setup", ["sh", "-c", "exit 3"])],
        ),
    )
    wait_for(lambda: pod_status(nsbox, "broken-init")["phase"] == "Failed", what="phase Failed")
    status = pod_status(nsbox, "broken-init")
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert "running" not in status["containerStatuses"][0]["state"]
    assert status_column(nsbox, "broken-init") == "Init:Error"


def test_env_values_expansion_and_downward_api(nsbox):
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "MESSAGE", "value": "$(GREETING) world, $$(GREETING) stays"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    apply(nsbox, pod("downward", container("c", SLEEP, env=env)))
    environ = proc_environ(nsbox.pid("downward"))
    assert environ["GREETING"] == "hello"
    assert environ["MESSAGE"] == "hello world, $(GREETING) stays"
    assert environ["POD_NAME"] == "downward"
    assert environ["POD_NAMESPACE"] == "default"
    assert environ["POD_UID"] == nsbox.uid("downward")
    assert environ["POD_IP"] == ""  # loopback network: no pod IP


def test_args_expand_env_references(nsbox):
    apply(
        nsbox,
        pod(
            "expand",
            container(
                "c",
                ["sh", "-c"],
                args=["trap 'exit 0' TERM; echo $(WORD) >&2; sleep 300 & wait"],
                env=[{"name": "WORD", "value": "expanded"}],
            ),
        ),
    )
    nsbox.pid("expand")
    wait_for(lambda: "expanded" in nsbox("logs", "expand").stdout, what="the expanded argument")


def test_working_dir_is_the_process_cwd(nsbox):
    apply(nsbox, pod("cwd", container("c", SLEEP, workingDir="/srv/app")))
    assert os.readlink(f"/proc/{nsbox.pid('cwd')}/cwd") == "/srv/app"


@pytest.fixture
def tiny_image(tmp_path):
    """A directory holding /bin/sh and the libraries it needs, and a marker: a container image on disk."""
    image = tmp_path / "image"
    sh = os.path.realpath("/bin/sh")
    ldd = subprocess.run(["ldd", sh], capture_output=True, text=True, check=True).stdout
    libs = [w for w in ldd.split() if w.startswith("/")]
    for path in [sh] + libs:
        target = image / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-L", path, str(target)], check=True)
    (image / "bin").mkdir(exist_ok=True)
    if not (image / "bin" / "sh").exists():
        os.symlink(sh, image / "bin" / "sh")
    (image / "FROM-THE-IMAGE").write_text("")
    return str(image)


def test_image_naming_a_local_directory_is_the_containers_root(nsbox, tiny_image):
    p = apply(
        nsbox,
        pod("imaged", container("c", ["/bin/sh", "-c", "cd / && echo *"], image=tiny_image), restartPolicy="Never"),
    )
    assert "warning" not in p.stderr
    assert terminated(nsbox, "imaged")["exitCode"] == 0
    seen = logs(nsbox, "imaged").split()
    assert "FROM-THE-IMAGE" in seen and "bin" in seen
    assert "root" not in seen and "home" not in seen  # nothing of the host's /


# ---------------------------------------------------------------- volumes


def test_read_only_volume_mount_refuses_writes(nsbox):
    write = "import errno\ntry: open('/ro/f', 'w')\nexcept OSError as e: print(errno.errorcode[e.errno])"
    apply(
        nsbox,
        pod(
            "ro",
            container(
                "c", ["python3", "-c", write], volumeMounts=[{"name": "data", "mountPath": "/ro", "readOnly": True}]
            ),
            restartPolicy="Never",
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    assert terminated(nsbox, "ro")["exitCode"] == 0
    assert logs(nsbox, "ro").strip() == "EROFS"


def test_read_only_volume_is_mounted_ro(nsbox):
    apply(
        nsbox,
        pod(
            "ro-mount",
            container("c", SLEEP, volumeMounts=[{"name": "data", "mountPath": "/ro", "readOnly": True}]),
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    assert "ro" in mount_at(nsbox.pid("ro-mount"), "/ro")["options"].split(",")


def test_sub_path_mounts_a_subdirectory_of_the_volume(nsbox):
    mounts = [{"name": "data", "mountPath": "/all"}, {"name": "data", "mountPath": "/part", "subPath": "sub/dir"}]
    apply(
        nsbox,
        pod(
            "subpath",
            container("c", then_sleep("echo x > /part/file"), volumeMounts=mounts),
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    pid = nsbox.pid("subpath")
    wait_for(lambda: os.path.exists(in_container(pid, "/all/sub/dir/file")), what="the file through the volume")
    assert os.listdir(in_container(pid, "/part")) == ["file"]


def test_sub_path_through_a_symbolic_link_is_refused_and_nothing_is_made_through_it(nsbox, tmp_path):
    # As the kubelet: no link in a subPath, even one that stays in the volume. (The pod may
    # swap a checked directory for a link before the mount; the mount refuses it too:
    # test_native's bind-beneath tests.)
    (tmp_path / "inside").mkdir()
    os.symlink("inside", tmp_path / "link")
    p = apply(
        nsbox,
        pod(
            "sublink",
            container("c", SLEEP, volumeMounts=[{"name": "host", "mountPath": "/h", "subPath": "link/x"}]),
            volumes=[{"name": "host", "hostPath": {"path": str(tmp_path)}}],
            restartPolicy="Never",
        ),
    )
    assert 'subPath "link/x": "link" is a symbolic link' in p.stderr
    state = wait_for(lambda: nsbox.container_state("sublink")["state"].get("terminated"), what="StartError")
    assert state["reason"] == "StartError"
    assert not (tmp_path / "inside" / "x").exists()


def test_memory_empty_dir_is_a_tmpfs_of_its_size_limit(nsbox):
    apply(
        nsbox,
        pod(
            "ram",
            container("c", SLEEP, volumeMounts=[{"name": "cache", "mountPath": "/cache"}]),
            volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        ),
    )
    pid = nsbox.pid("ram")
    assert mount_at(pid, "/cache")["fstype"] == "tmpfs"
    df = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "df", "-k", "--output=size,target", "/cache"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert df[1].split() == [str(16 * 1024), "/cache"]


def test_host_path_volume_shares_files_with_the_host(nsbox, host_dir):
    apply(
        nsbox,
        pod(
            "hostpath",
            container("c", then_sleep("echo from-pod > /host/out"), volumeMounts=[{"name": "h", "mountPath": "/host"}]),
            volumes=[{"name": "h", "hostPath": {"path": host_dir, "type": "Directory"}}],
        ),
    )
    wait_for(lambda: os.path.exists(f"{host_dir}/out"), what="the file on the host")
    assert read(f"{host_dir}/out") == "from-pod\n"


def test_file_or_create_host_path_is_an_empty_file_made_on_the_host(nsbox, host_dir):
    target = f"{host_dir}/app.log"
    apply(
        nsbox,
        pod(
            "hostfile",
            container(
                "c",
                then_sleep("echo line >> /var/log/app.log"),
                volumeMounts=[{"name": "log", "mountPath": "/var/log/app.log"}],
            ),
            volumes=[{"name": "log", "hostPath": {"path": target, "type": "FileOrCreate"}}],
        ),
    )
    wait_for(lambda: os.path.isfile(target) and read(target) == "line\n", what="the line in the host file")


def test_host_paths_that_are_missing_or_of_the_wrong_type_create_nothing(nsbox, host_dir):
    missing = pod(
        "missing",
        container("c", SLEEP),
        volumes=[{"name": "h", "hostPath": {"path": f"{host_dir}/absent", "type": "Directory"}}],
    )
    not_a_file = pod(
        "not-a-file", container("c", SLEEP), volumes=[{"name": "h", "hostPath": {"path": host_dir, "type": "File"}}]
    )
    p = apply(nsbox, pod("fine", container("c", SLEEP)), missing, not_a_file, check=False)
    assert p.returncode == 1
    assert f'error: pod/missing: volume "h": hostPath {host_dir}/absent does not exist' in p.stderr
    assert f'error: pod/not-a-file: volume "h": hostPath {host_dir} is not a File' in p.stderr
    assert pods_in_root(nsbox) == [] and not os.path.exists(f"{host_dir}/absent")


def test_disk_empty_dir_over_its_size_limit_evicts_the_pod(nsbox):
    fill = then_sleep("head -c 3000000 /dev/zero > /scratch/big")
    apply(
        nsbox,
        pod(
            "hog",
            container("c", fill, volumeMounts=[{"name": "s", "mountPath": "/scratch"}]),
            volumes=[{"name": "s", "emptyDir": {"sizeLimit": "1Mi"}}],
        ),
    )
    wait_for(lambda: pod_status(nsbox, "hog")["phase"] == "Failed", timeout=15, what="eviction")
    status = pod_status(nsbox, "hog")
    assert status["reason"] == "Evicted"
    assert 'Usage of EmptyDir volume "s" exceeds the limit' in status["message"]
    assert terminated(nsbox, "hog")["exitCode"] == 0  # the shell obeyed SIGTERM
    assert pod_processes(nsbox, "hog") == []
    assert status_column(nsbox, "hog") == "Evicted"


# ---------------------------------------------------------------- security


def test_run_as_user_and_group_drop_every_capability(nsbox):
    sc = {"runAsUser": 1000, "runAsGroup": 2000}
    apply(nsbox, pod("user", container("c", SLEEP, securityContext=sc)))
    st = proc_status(nsbox.pid("user"))
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["2000"] * 4
    assert "2000" in st["Groups"].split()  # the primary group is a supplementary one, as containerd gives it
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0


def test_pod_security_context_supplies_defaults(nsbox):
    apply(
        nsbox,
        pod(
            "defaults",
            container("inherits", SLEEP),
            container("overrides", SLEEP, securityContext={"runAsUser": 1001}),
            securityContext={"runAsUser": 1234, "runAsGroup": 1235},
        ),
    )
    inherits = proc_status(nsbox.pid("defaults", "inherits"))
    overrides = proc_status(nsbox.pid("defaults", "overrides"))
    assert inherits["Uid"].split()[0] == "1234" and inherits["Gid"].split()[0] == "1235"
    assert overrides["Uid"].split()[0] == "1001" and overrides["Gid"].split()[0] == "1235"


def test_capabilities_add_and_drop_change_the_bounding_set(nsbox):
    caps = {"add": ["NET_ADMIN"], "drop": ["CHOWN", "KILL"]}
    apply(nsbox, pod("caps", container("c", SLEEP, securityContext={"capabilities": caps})))
    bounding = int(proc_status(nsbox.pid("caps"))["CapBnd"], 16)
    CHOWN, KILL, NET_BIND_SERVICE, NET_ADMIN, SYS_ADMIN = 0, 5, 10, 12, 21
    assert bounding & (1 << NET_ADMIN)
    assert bounding & (1 << NET_BIND_SERVICE)
    assert not bounding & (1 << CHOWN)
    assert not bounding & (1 << KILL)
    assert not bounding & (1 << SYS_ADMIN)


def test_allow_privilege_escalation_false_sets_no_new_privs(nsbox):
    apply(
        nsbox,
        pod(
            "nnp",
            container("c", SLEEP, securityContext={"allowPrivilegeEscalation": False}),
            container("default", SLEEP),
        ),
    )
    assert proc_status(nsbox.pid("nnp", "c"))["NoNewPrivs"] == "1"
    assert proc_status(nsbox.pid("nnp", "default"))["NoNewPrivs"] == "0"


def test_read_only_root_filesystem_refuses_writes_to_etc(nsbox):
    write = "import errno\ntry: open('/etc/nsbox-test', 'w')\nexcept OSError as e: print(errno.errorcode[e.errno])"
    apply(
        nsbox,
        pod(
            "rootro",
            container("c", ["python3", "-c", write], securityContext={"readOnlyRootFilesystem": True}),
            restartPolicy="Never",
        ),
    )
    assert terminated(nsbox, "rootro")["exitCode"] == 0
    assert logs(nsbox, "rootro").strip() == "EROFS"
    assert not os.path.exists("/etc/nsbox-test")


def test_privileged_container_has_every_capability(nsbox):
    apply(nsbox, pod("priv", container("c", SLEEP, securityContext={"privileged": True})))
    st = proc_status(nsbox.pid("priv"))
    assert int(st["CapEff"], 16) == our_bounding_set()
    assert int(st["CapBnd"], 16) == our_bounding_set()


# ---------------------------------------------------------------- resources


def test_limits_reach_the_container_cgroups_and_the_pod_gets_the_sums(nsbox):
    apply(
        nsbox,
        pod(
            "limited",
            container("a", SLEEP, resources={"limits": {"cpu": "250m", "memory": "64Mi"}}),
            container("b", SLEEP, resources={"limits": {"cpu": "0.5", "memory": "128Mi"}}),
        ),
    )
    nsbox.pid("limited", "a"), nsbox.pid("limited", "b")
    uid = nsbox.uid("limited")
    assert cgroup_limits(uid, "a") == (25000, 64 << 20)
    assert cgroup_limits(uid, "b") == (50000, 128 << 20)
    assert cgroup_limits(uid) == (75000, 192 << 20)


def test_the_pod_gets_no_limit_for_a_resource_one_container_leaves_unlimited(nsbox):
    apply(
        nsbox,
        pod(
            "partial",
            container("a", SLEEP, resources={"limits": {"cpu": "250m", "memory": "64Mi"}}),
            container("b", SLEEP, resources={"limits": {"memory": "32Mi"}}),
        ),
    )
    nsbox.pid("partial", "b")
    uid = nsbox.uid("partial")
    assert cgroup_limits(uid, "b") == (None, 32 << 20)
    assert cgroup_limits(uid) == (None, 96 << 20)


def test_a_container_killed_by_the_oom_killer_reports_oom_killed(nsbox):
    hog = "b = b'x' * (200 * 1024 * 1024); print('survived')"
    apply(
        nsbox,
        pod(
            "oom",
            container("c", ["python3", "-c", hog], resources={"limits": {"memory": "32Mi"}}),
            restartPolicy="Never",
        ),
    )
    state = terminated(nsbox, "oom", timeout=30)
    assert state["reason"] == "OOMKilled"
    assert state["exitCode"] == 137
    assert "survived" not in logs(nsbox, "oom")


# ---------------------------------------------------------------- lifecycle


def test_post_start_hook_creates_a_file_the_container_sees(nsbox):
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "echo started > /tmp/post-start"]}}}
    apply(nsbox, pod("poststart", container("c", SLEEP, lifecycle=hook)))
    pid = nsbox.pid("poststart")
    wait_for(lambda: os.path.exists(in_container(pid, "/tmp/post-start")), what="the postStart file")
    assert read(in_container(pid, "/tmp/post-start")) == "started\n"
    assert not os.path.exists("/tmp/post-start")  # written in the container's own root


def test_pre_stop_hook_runs_inside_the_container_on_delete(nsbox, host_dir):
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "cat /etc/hostname > /host/pre-stop"]}}}
    apply(
        nsbox,
        pod(
            "prestop",
            container("c", SLEEP, lifecycle=hook, volumeMounts=[{"name": "h", "mountPath": "/host"}]),
            volumes=[{"name": "h", "hostPath": {"path": host_dir}}],
            terminationGracePeriodSeconds=10,
        ),
    )
    nsbox.pid("prestop")
    assert nsbox("delete", "pod", "prestop").stdout.strip() == 'pod "prestop" deleted'
    assert read(f"{host_dir}/pre-stop") == "prestop\n"


def test_on_failure_restarts_with_crash_loop_back_off(nsbox):
    apply(nsbox, pod("crashy", container("c", ["sh", "-c", "exit 3"]), restartPolicy="OnFailure", annotations=FAST))
    wait_for(lambda: status_column(nsbox, "crashy") == "CrashLoopBackOff", timeout=20, what="CrashLoopBackOff")
    wait_for(lambda: nsbox.container_state("crashy")["restartCount"] >= 2, timeout=20, what="two restarts")
    last = nsbox.container_state("crashy")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"


def test_on_failure_does_not_restart_a_container_that_succeeded(nsbox):
    apply(nsbox, pod("once", container("c", ["true"]), restartPolicy="OnFailure", annotations=FAST))
    wait_for(lambda: pod_status(nsbox, "once")["phase"] == "Succeeded", what="phase Succeeded")
    assert nsbox.container_state("once")["restartCount"] == 0
    assert status_column(nsbox, "once") == "Completed"


def test_active_deadline_fails_the_pod_and_stops_its_containers(nsbox):
    apply(nsbox, pod("deadline", container("c", ["sleep", "300"]), activeDeadlineSeconds=2, annotations=FAST))
    wait_for(
        lambda: pod_status(nsbox, "deadline").get("reason") == "DeadlineExceeded", timeout=15, what="DeadlineExceeded"
    )
    state = terminated(nsbox, "deadline")
    assert state["exitCode"] == 137  # PID 1 `sleep` ignores SIGTERM: killed after the grace period
    assert pod_processes(nsbox, "deadline") == []
    status = pod_status(nsbox, "deadline")
    assert status["phase"] == "Failed"
    assert status_column(nsbox, "deadline") == "DeadlineExceeded"
    # The pod stays (Kubernetes keeps it for inspection) and nothing restarts, even with restartPolicy Always
    # and a 1 s back-off.
    assert stays_false(lambda: nsbox.container_state("deadline")["restartCount"] > 0, 2.5)
    assert "terminated" in nsbox.container_state("deadline")["state"]


# ---------------------------------------------------------------- termination


def test_delete_uses_termination_grace_period_seconds(nsbox):
    # `sleep` as PID 1 ignores SIGTERM, so it lives until the SIGKILL at the end of the grace period.
    apply(nsbox, pod("graceful", container("c", ["sleep", "300"]), terminationGracePeriodSeconds=3))
    pid = nsbox.pid("graceful")
    t0 = time.monotonic()
    nsbox("delete", "pod", "graceful")
    elapsed = time.monotonic() - t0
    assert 2.8 <= elapsed < 15, elapsed
    assert not alive(pid)


def test_delete_f_deletes_the_pods_of_the_file(nsbox, tmp_path):
    f = tmp_path / "pods.yaml"
    f.write_text(as_yaml(pod("x", container("c", SLEEP)), pod("y", container("c", SLEEP))))
    nsbox("apply", "-f", str(f))
    apply(nsbox, pod("z", container("c", SLEEP)))
    pids = [nsbox.pid("x"), nsbox.pid("y")]
    p = nsbox("delete", "-f", str(f), "--grace-period", "0")
    assert p.stdout.splitlines() == ['pod "x" deleted', 'pod "y" deleted']
    assert not any(alive(pid) for pid in pids)
    assert nsbox("get", "pods", "-o", "name").stdout.split() == ["pod/z"]


# ---------------------------------------------------------------- namespaces


def commands_seen_by(pid: int) -> dict[int, str]:
    """PID -> command line of every process in the PID namespace of `pid`, read from its own /proc."""
    proc = in_container(pid, "/proc")
    seen = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                seen[int(entry)] = read(f"{proc}/{entry}/cmdline").replace("\0", " ").strip()
            except OSError:
                pass
    return seen


def test_hostname_field_overrides_the_pod_name(nsbox):
    apply(nsbox, pod("named", container("c", SLEEP), hostname="custom-host"))
    pid = nsbox.pid("named")
    seen = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True)
    assert seen.stdout.strip() == "custom-host"
    assert read(in_container(pid, "/etc/hostname")) == "custom-host\n"


def test_host_network_ipc_and_pid_join_the_hosts_namespaces(nsbox):
    apply(nsbox, pod("hosty", container("c", SLEEP), hostNetwork=True, hostIPC=True, hostPID=True))
    pid = nsbox.pid("hosty")
    for ns in ("net", "ipc", "pid", "uts"):
        assert ns_inode(pid, ns) == ns_inode(HOST, ns), ns
    assert ns_inode(pid, "mnt") != ns_inode(HOST, "mnt")


def test_default_pod_namespaces_are_not_the_hosts(nsbox):
    apply(nsbox, pod("private", container("c", SLEEP)))
    pid = nsbox.pid("private")
    for ns in ("net", "ipc", "pid", "uts", "mnt"):
        assert ns_inode(pid, ns) != ns_inode(HOST, ns), ns


def test_share_process_namespace_shows_each_containers_processes_to_the_others(nsbox):
    apply(
        nsbox,
        pod("shared", container("a", ["sleep", "301"]), container("b", ["sleep", "302"]), shareProcessNamespace=True),
    )
    a, b = nsbox.pid("shared", "a"), nsbox.pid("shared", "b")
    assert ns_inode(a, "pid") == ns_inode(b, "pid") != ns_inode(HOST, "pid")

    assert "sleep 301" in commands_seen_by(b).values()
    assert "sleep 302" in commands_seen_by(a).values()


@pytest.mark.cgroupv2
def test_a_shared_pid_namespace_has_a_reaper_as_pid_1(nsbox):
    apply(nsbox, pod("reaped", container("c", SLEEP), shareProcessNamespace=True))
    pid = nsbox.pid("reaped")
    assert proc_status(pid)["NSpid"].split()[-1] != "1"
    assert read(in_container(pid, "/proc/1/comm")).strip() == "nsbox-pause"
    # exec'd (csrc/init.c), not a fork of the Python watcher that keeps copies of its memory,
    # from the sealed memfd copy of nsbox-init (docs/security.md §12)
    assert os.readlink(in_container(pid, "/proc/1/exe")) == "/memfd:nsbox-init (deleted)"
    assert "python" not in read(in_container(pid, "/proc/1/maps"))


def test_orphans_in_a_shared_pid_namespace_are_reaped(nsbox):
    # The subshell exits at once: its loop is orphaned, reparented to PID 1, and ends when the test says so;
    # then it must be reaped, not left a zombie.
    loop = "(while [ ! -e /tmp/go ]; do sleep 0.1; done &)"
    apply(nsbox, pod("orphans", container("c", then_sleep(loop)), shareProcessNamespace=True))
    pid = nsbox.pid("orphans")
    orphans = wait_for(lambda: children_of_pid_1(pid), what="the orphan")
    open(in_container(pid, "/tmp/go"), "w").close()
    wait_for(
        lambda: not any(os.path.exists(in_container(pid, f"/proc/{o}")) for o in orphans),
        what="the orphan to be reaped",
    )


def children_of_pid_1(pid: int) -> list[int]:
    """The processes whose parent is PID 1 in the PID namespace of `pid`."""
    found = []
    for ns_pid in commands_seen_by(pid):
        try:
            if "PPid:\t1\n" in read(in_container(pid, f"/proc/{ns_pid}/status")):
                found.append(ns_pid)
        except OSError:
            pass
    return found


def test_with_a_shared_pid_namespace_leftovers_of_an_ended_container_are_killed(nsbox):
    apply(
        nsbox,
        pod(
            "leftovers",
            container("quitter", ["sh", "-c", "sleep 303 & exit 0"]),
            container("stays", SLEEP),
            shareProcessNamespace=True,
            restartPolicy="Never",
        ),
    )
    stays = nsbox.pid("leftovers", "stays")
    terminated(nsbox, "leftovers", "quitter")
    wait_for(lambda: "sleep 303" not in commands_seen_by(stays).values(), what="the leftover to be killed")


# ---------------------------------------------------------------- descriptors


def test_a_post_start_hook_and_its_container_hold_only_stdio(nsbox):
    hook = {"postStart": {"exec": {"command": ["sleep", "301"]}}}  # stays while we look
    apply(nsbox, pod("hookfds", container("c", ["sleep", "300"], lifecycle=hook)))
    main, uid = nsbox.pid("hookfds"), nsbox.uid("hookfds")

    def hook_pid() -> int | None:
        for p in {p for d in cgroup_dirs(uid) for p in cgroup_pids(d)}:
            try:
                if read(f"/proc/{p}/cmdline").split("\0") == ["sleep", "301", ""]:
                    return p
            except OSError:  # gone meanwhile
                pass
        return None

    assert sleeping_fds(main) == {0, 1, 2}
    assert sleeping_fds(wait_for(hook_pid, what="the postStart hook")) == {0, 1, 2}


def test_the_pid_1_of_a_shared_pid_namespace_holds_only_stdio(nsbox):
    apply(nsbox, pod("pausefds", container("c", ["sleep", "300"]), shareProcessNamespace=True))
    pid_ns = ns_inode(nsbox.pid("pausefds"), "pid")

    def pause_pid() -> int | None:
        for entry in os.listdir("/proc"):
            try:
                if (
                    entry.isdigit()
                    and read(f"/proc/{entry}/comm") == "nsbox-pause\n"
                    and ns_inode(int(entry), "pid") == pid_ns
                ):
                    return int(entry)
            except OSError:  # gone meanwhile
                pass
        return None

    # It waits for orphans, or for SIGCHLD while it has no child.
    assert sleeping_fds(
        wait_for(pause_pid, what="nsbox-pause"), asleep_in=frozenset({"do_wait", "do_sigtimedwait"})
    ) == {0, 1, 2}
