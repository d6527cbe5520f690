"""Pods consuming ConfigMaps, Secrets and the downward API, on the real kernel.

Objects are created and changed through `put_object` / `delete_object` only;
the pods are real manifest pods (`nsbox apply`). What a container sees is read
from the host through /proc/PID/root, /proc/PID/environ and /proc/PID/mountinfo.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from typing import Any

import pytest
from conftest import wait_for
from test_apply import SLEEP, apply, container, in_container, mount_at, pod, proc_environ, read
from test_hibernate import exe, idle_watcher

from nsbox import objects, projection
from nsbox.model import ContainerSpec, DownwardFile, KeyToPath, PodSpec, Projection, Resources, Volume
from nsbox.state import Root

SECRET_VALUE = "s3cr3t-Value-42"


# ---------------------------------------------------------------- objects


def config_map(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def secret(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def put_object(nsbox, obj: dict[str, Any]) -> None:
    """Create or replace a ConfigMap or Secret as a user does: `apply -f -`."""
    meta = obj["metadata"]
    nsbox("-n", meta.get("namespace", "default"), "apply", "-f", "-", input=json.dumps(obj))


def delete_object(nsbox, kind: str, name: str, namespace: str = "default") -> None:
    nsbox("-n", namespace, "delete", kind.lower(), name)


# ---------------------------------------------------------------- observers


def started(nsbox, name: str) -> int:
    return nsbox.pid(name)


def waiting(nsbox, name: str) -> dict[str, Any]:
    return nsbox.container_state(name)["state"].get("waiting") or {}


def events(nsbox, name: str) -> list[dict[str, Any]]:
    """The pod's events as its watcher recorded them (what describe shows)."""
    with open(Root(nsbox.root).pod(nsbox.uid(name)).status_json) as f:
        return json.load(f).get("events", [])


def describe(nsbox, name: str) -> str:
    return nsbox("describe", "pod", name).stdout


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- environment


def test_env_from_key_refs_env_from_with_prefix_and_resources(nsbox):
    # `apply` refuses a key like "bad=name"; the store is written directly here so that the
    # kubelet's skip of keys that are not variable names is exercised all the same.
    objects.save(nsbox.root, config_map("settings", {"color": "blue", "size": "L", "bad=name": "x"}))
    put_object(nsbox, secret("creds", {"password": SECRET_VALUE}))
    apply(
        nsbox,
        pod(
            "envs",
            container(
                "app",
                SLEEP,
                resources={"limits": {"memory": "64Mi", "cpu": "250m"}},
                envFrom=[
                    {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "missing", "optional": True}},
                ],
                env=[
                    {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "CFG_size", "value": "explicit wins"},
                    {"name": "SENTENCE", "value": "$(COLOR) and $(CFG_color)"},
                    {
                        "name": "MAYBE",
                        "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": True}},
                    },
                    {
                        "name": "MEM_MI",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                    {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "REQ_MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
                ],
            ),
        ),
    )
    env = proc_environ(started(nsbox, "envs"))
    assert env["COLOR"] == "blue"
    assert env["PASSWORD"] == SECRET_VALUE
    assert env["CFG_color"] == "blue"
    assert env["CFG_size"] == "explicit wins"
    assert env["SENTENCE"] == "blue and blue"  # $(VAR) sees them
    assert "MAYBE" not in env and "CFG_bad=name" not in env
    assert (env["MEM_MI"], env["CPU_M"], env["CPU"]) == ("64", "250", "1")  # 0.25 cores rounds up
    assert env["REQ_MEM"] == str(64 << 20)  # a request defaults to the limit
    skipped = [e for e in events(nsbox, "envs") if e["reason"] == "InvalidEnvironmentVariableNames"]
    assert skipped and "CFG_bad=name" in skipped[0]["message"]


def test_resource_values_are_divided_and_rounded_up_as_the_kubelet_does():
    spec = PodSpec(
        name="p",
        containers=[
            ContainerSpec(
                name="c",
                command=["true"],
                resources=Resources(cpu_millis=250, memory_bytes=100 << 20, cpu_request_millis=100),
            )
        ],
    )

    def value(resource: str, divisor: str = "") -> str:
        return projection.resource_value(spec, "c", resource, divisor)

    assert (value("limits.cpu"), value("limits.cpu", "1m"), value("requests.cpu", "1m")) == ("1", "250", "100")
    assert (value("limits.memory", "1Gi"), value("limits.memory", "1Mi"), value("limits.memory", "1k")) == (
        "1",
        "100",
        str(-(-(100 << 20) // 1000)),
    )
    assert value("requests.memory") == str(100 << 20)  # an unset request is the limit
    assert value("requests.ephemeral-storage") == "0"
    with pytest.raises(projection.ConfigNotReady, match="container x not found"):
        projection.resource_value(spec, "x", "limits.cpu", "")


def test_unset_limit_is_the_machines_allocatable(nsbox):
    apply(
        nsbox,
        pod(
            "alloc",
            container(
                "app",
                SLEEP,
                env=[
                    {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Ki"}}},
                ],
            ),
        ),
    )
    env = proc_environ(started(nsbox, "alloc"))
    meminfo = dict(line.split(":", 1) for line in read("/proc/meminfo").splitlines())
    assert env["CPUS"] == str(os.cpu_count())
    assert env["MEM"] == meminfo["MemTotal"].split()[0]


def test_missing_key_waits_with_create_container_config_error_until_it_appears(nsbox):
    put_object(nsbox, config_map("partial", {"other": "x"}))
    apply(
        nsbox,
        pod(
            "waits",
            container(
                "app",
                SLEEP,
                env=[
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "partial", "key": "k"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}},
                ],
            ),
        ),
    )
    state = wait_for(
        lambda: waiting(nsbox, "waits").get("reason") == "CreateContainerConfigError" and waiting(nsbox, "waits"),
        what="CreateContainerConfigError",
    )
    assert state["message"] == "couldn't find key k in ConfigMap default/partial"
    assert any(
        e["reason"] == "Failed" and e["message"] == "Error: couldn't find key k in ConfigMap default/partial"
        for e in events(nsbox, "waits")
    )
    put_object(nsbox, config_map("partial", {"k": "now"}))
    wait_for(
        lambda: waiting(nsbox, "waits").get("message") == 'secret "later" not found', what="the next missing object"
    )
    put_object(nsbox, secret("later", {"token": "t"}))
    env = proc_environ(started(nsbox, "waits"))
    assert (env["K"], env["S"]) == ("now", "t")
    assert nsbox.container_state("waits")["restartCount"] == 0


def test_a_waiting_container_retries_by_itself_while_its_pod_is_quiet(nsbox):
    apply(nsbox, pod("retry", container("app", SLEEP, envFrom=[{"configMapRef": {"name": "late"}}])))
    wait_for(
        lambda: waiting(nsbox, "retry").get("message") == 'configmap "late" not found',
        what="CreateContainerConfigError",
    )
    idle_watcher(nsbox, "retry")  # quiet: its watcher is nsbox-idle
    # Deliberately not put_object: stored without telling any pod, the retry timer alone starts it.
    objects.save(nsbox.root, config_map("late", {"A": "1"}))
    env = proc_environ(
        wait_for(
            lambda: nsbox.inspect("retry")["containers"][0]["pid"], timeout=25, interval=0.5, what="the retry timer"
        )
    )
    assert env["A"] == "1"


def test_only_the_pods_that_use_an_object_are_woken(nsbox):
    put_object(nsbox, config_map("used", {"k": "1"}))
    apply(
        nsbox,
        pod(
            "user",
            container("app", SLEEP, volumeMounts=[{"name": "c", "mountPath": "/c"}]),
            volumes=[{"name": "c", "configMap": {"name": "used"}}],
        ),
        pod(
            "bystander",
            container(
                "app",
                SLEEP,
                env=[{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "k", "optional": True}}}],
            ),
        ),
    )
    pid = started(nsbox, "user")
    started(nsbox, "bystander")
    idle_watcher(nsbox, "user")
    bystander = idle_watcher(nsbox, "bystander")
    put_object(nsbox, config_map("used", {"k": "2"}))
    assert read(in_container(pid, "/c/k")) == "2"  # done when config_changed returns
    assert exe(bystander) == "nsbox-idle"  # never woken (it would stay awake 0.5 s)


def test_env_does_not_follow_an_update(nsbox):
    put_object(nsbox, config_map("fixed", {"v": "1"}))
    apply(
        nsbox,
        pod(
            "still",
            container(
                "app", SLEEP, env=[{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "fixed", "key": "v"}}}]
            ),
        ),
    )
    pid = started(nsbox, "still")
    put_object(nsbox, config_map("fixed", {"v": "2"}))
    assert proc_environ(pid)["V"] == "1"
    assert nsbox("exec", "still", "--", "sh", "-c", "echo $V").stdout == "1\n"


# ---------------------------------------------------------------- volumes


def test_config_map_volume_items_modes_and_atomic_layout(nsbox):
    put_object(nsbox, config_map("files", {"a.conf": "alpha", "b.conf": "beta"}))
    apply(
        nsbox,
        pod(
            "cmvol",
            container(
                "app",
                SLEEP,
                volumeMounts=[{"name": "all", "mountPath": "/all"}, {"name": "some", "mountPath": "/some"}],
            ),
            volumes=[
                {"name": "all", "configMap": {"name": "files", "defaultMode": 0o440}},
                {
                    "name": "some",
                    "configMap": {
                        "name": "files",
                        "items": [
                            {"key": "a.conf", "path": "sub/dir/a", "mode": 0o600},
                            {"key": "b.conf", "path": "b"},
                        ],
                    },
                },
            ],
        ),
    )
    pid = started(nsbox, "cmvol")
    all_dir, some_dir = in_container(pid, "/all"), in_container(pid, "/some")
    assert sorted(n for n in os.listdir(all_dir) if not n.startswith("..")) == ["a.conf", "b.conf"]
    assert read(f"{all_dir}/a.conf") == "alpha" and mode(f"{all_dir}/a.conf") == 0o440
    assert os.readlink(f"{all_dir}/a.conf") == "..data/a.conf"
    data = os.readlink(f"{all_dir}/..data")
    assert data.startswith("..") and os.path.isdir(f"{all_dir}/{data}")
    assert read(f"{some_dir}/sub/dir/a") == "alpha" and mode(f"{some_dir}/sub/dir/a") == 0o600
    assert mode(f"{some_dir}/b") == 0o644
    assert os.readlink(f"{some_dir}/sub") == "..data/sub"
    m = mount_at(pid, "/all")
    assert m["fstype"] == "tmpfs" and "ro" in m["options"].split(",")


def test_secret_volume_is_on_tmpfs_with_default_mode(nsbox):
    put_object(nsbox, secret("tls", {"tls.key": SECRET_VALUE}))
    apply(
        nsbox,
        pod(
            "secvol",
            container("app", SLEEP, volumeMounts=[{"name": "s", "mountPath": "/tls"}]),
            volumes=[{"name": "s", "secret": {"secretName": "tls", "defaultMode": 0o400}}],
        ),
    )
    pid = started(nsbox, "secvol")
    assert read(in_container(pid, "/tls/tls.key")) == SECRET_VALUE
    assert mode(in_container(pid, "/tls/tls.key")) == 0o400
    assert mount_at(pid, "/tls")["fstype"] == "tmpfs"
    with pytest.raises(OSError):
        open(in_container(pid, "/tls/new"), "w")  # read-only in the container


def test_downward_api_volume(nsbox):
    doc = pod(
        "down",
        container(
            "app",
            SLEEP,
            resources={"limits": {"memory": "32Mi"}},
            volumeMounts=[{"name": "info", "mountPath": "/info"}],
        ),
        volumes=[
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                        {
                            "path": "mem",
                            "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"},
                            "mode": 0o400,
                        },
                    ]
                },
            }
        ],
    )
    doc["metadata"]["labels"] = {"tier": "web", "app": "demo"}
    apply(nsbox, doc)
    pid = started(nsbox, "down")
    info = in_container(pid, "/info")
    assert read(f"{info}/name") == "down"
    assert read(f"{info}/labels") == 'app="demo"\ntier="web"'
    assert read(f"{info}/tier") == "web"
    assert read(f"{info}/mem") == "32" and mode(f"{info}/mem") == 0o400


def test_projected_volume_combines_sources(nsbox):
    put_object(nsbox, config_map("p-cm", {"app.conf": "conf"}))
    put_object(nsbox, secret("p-sec", {"user": "admin"}))
    apply(
        nsbox,
        pod(
            "proj",
            container("app", SLEEP, volumeMounts=[{"name": "all", "mountPath": "/all"}]),
            volumes=[
                {
                    "name": "all",
                    "projected": {
                        "defaultMode": 0o640,
                        "sources": [
                            {"configMap": {"name": "p-cm"}},
                            {"secret": {"name": "p-sec", "items": [{"key": "user", "path": "creds/user"}]}},
                            {
                                "downwardAPI": {
                                    "items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                                }
                            },
                            {"configMap": {"name": "absent", "optional": True}},
                        ],
                    },
                }
            ],
        ),
    )
    pid = started(nsbox, "proj")
    d = in_container(pid, "/all")
    assert (read(f"{d}/app.conf"), read(f"{d}/creds/user"), read(f"{d}/ns")) == ("conf", "admin", "default")
    assert mode(f"{d}/creds/user") == 0o640


def test_update_reaches_a_mounted_volume_but_not_a_sub_path(nsbox):
    put_object(nsbox, config_map("live", {"k": "v1"}))
    apply(
        nsbox,
        pod(
            "upd",
            container(
                "app",
                SLEEP,
                volumeMounts=[{"name": "c", "mountPath": "/c"}, {"name": "c", "mountPath": "/single", "subPath": "k"}],
            ),
            volumes=[{"name": "c", "configMap": {"name": "live"}}],
        ),
    )
    pid = started(nsbox, "upd")
    old_data = os.readlink(in_container(pid, "/c/..data"))
    put_object(nsbox, config_map("live", {"k": "v2", "added": "x"}))
    wait_for(lambda: read(in_container(pid, "/c/k")) == "v2", timeout=5, what="the update in the volume")
    assert read(in_container(pid, "/c/added")) == "x"
    assert os.readlink(in_container(pid, "/c/..data")) != old_data
    assert not os.path.exists(in_container(pid, f"/c/{old_data}"))
    assert read(in_container(pid, "/single")) == "v1"
    put_object(nsbox, config_map("live", {"k": "v3"}))
    wait_for(lambda: not os.path.lexists(in_container(pid, "/c/added")), timeout=5, what="a removed key to go")


def test_missing_volume_object_fails_mount_then_starts(nsbox):
    apply(
        nsbox,
        pod(
            "mnt",
            container("app", SLEEP, volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}]),
            volumes=[
                {"name": "cfg", "configMap": {"name": "later"}},
                {"name": "opt", "secret": {"secretName": "never", "optional": True}},
            ],
        ),
    )
    wait_for(lambda: any(e["reason"] == "FailedMount" for e in events(nsbox, "mnt")), what="FailedMount")
    failed = [e for e in events(nsbox, "mnt") if e["reason"] == "FailedMount"]
    assert failed[0]["message"] == 'MountVolume.SetUp failed for volume "cfg" : configmap "later" not found'
    assert waiting(nsbox, "mnt") == {"reason": "ContainerCreating"}
    assert not nsbox.inspect("mnt")["containers"][0]["pid"]
    put_object(nsbox, config_map("later", {"x": "1"}))
    pid = started(nsbox, "mnt")
    assert read(in_container(pid, "/cfg/x")) == "1"


def test_a_deleted_object_leaves_the_mounted_files_as_they_were(nsbox):
    put_object(nsbox, config_map("gone", {"k": "kept"}))
    apply(
        nsbox,
        pod(
            "keeps",
            container("app", SLEEP, volumeMounts=[{"name": "c", "mountPath": "/c"}]),
            volumes=[{"name": "c", "configMap": {"name": "gone"}}],
        ),
    )
    pid = started(nsbox, "keeps")
    delete_object(nsbox, "ConfigMap", "gone")
    assert any(
        e["reason"] == "FailedMount" and e["message"].endswith('configmap "gone" not found')
        for e in events(nsbox, "keeps")
    )
    assert read(in_container(pid, "/c/k")) == "kept"


def test_fs_group_owns_a_mounted_secret_volume(nsbox):
    put_object(nsbox, secret("grp", {"k": "v"}))
    apply(
        nsbox,
        pod(
            "grp",
            container("app", SLEEP, volumeMounts=[{"name": "s", "mountPath": "/s"}]),
            volumes=[{"name": "s", "secret": {"secretName": "grp", "defaultMode": 0o600}}],
            securityContext={"fsGroup": 4321},
        ),
    )
    pid = started(nsbox, "grp")
    st = os.stat(in_container(pid, "/s/k"))
    assert st.st_gid == 4321 and stat.S_IMODE(st.st_mode) == 0o640
    top = os.stat(in_container(pid, "/s"))
    assert top.st_gid == 4321 and top.st_mode & stat.S_ISGID


def test_fs_group_owns_the_volume_files(tmp_path):
    """The kubelet's ownership rule over a written volume (the fsGroup of the manifest
    arrives through PodSpec.fs_group)."""
    objects.save(str(tmp_path), config_map("own", {"k": "v"}))
    spec = PodSpec(name="p", fs_group=4321)
    v = Volume(
        name="v",
        kind="configMap",
        sources=[Projection(kind="configMap", name="own", items=[KeyToPath("k", "k", 0o600)])],
    )
    target = tmp_path / "vol"
    target.mkdir()
    assert projection.set_up(str(tmp_path), spec, v, str(target))
    st = os.stat(target / "k")
    assert st.st_gid == 4321 and stat.S_IMODE(st.st_mode) == 0o640  # group read, never write
    assert os.stat(target).st_mode & stat.S_ISGID
    assert not projection.set_up(str(tmp_path), spec, v, str(target))  # unchanged: not rewritten
    down = Volume(
        name="d",
        kind="downwardAPI",
        sources=[Projection(kind="downwardAPI", files=[DownwardFile(path="n", field_ref="metadata.name")])],
    )
    assert projection.volume_payload(str(tmp_path), spec, down) == {"n": (b"p", 0o644)}


# ---------------------------------------------------------------- secrecy and refusals


def test_secret_values_stay_out_of_describe_events_and_get(nsbox):
    put_object(nsbox, secret("hidden", {"pw": SECRET_VALUE}))
    apply(
        nsbox,
        pod(
            "quiet",
            container(
                "app",
                SLEEP,
                volumeMounts=[{"name": "s", "mountPath": "/s"}],
                env=[
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "hidden", "key": "pw"}}},
                    {"name": "NOPE", "valueFrom": {"secretKeyRef": {"name": "hidden", "key": "absent"}}},
                ],
            ),
            volumes=[{"name": "s", "secret": {"secretName": "hidden"}}],
        ),
    )
    wait_for(lambda: waiting(nsbox, "quiet").get("reason") == "CreateContainerConfigError", what="the missing key")
    assert "couldn't find key absent in Secret default/hidden" in waiting(nsbox, "quiet")["message"]
    for text in (
        describe(nsbox, "quiet"),
        nsbox("get", "pods", "quiet", "-o", "yaml").stdout,
        json.dumps(nsbox.inspect("quiet")),
        json.dumps(events(nsbox, "quiet")),
    ):
        assert SECRET_VALUE not in text
        assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text


def test_service_account_tokens_are_refused(nsbox):
    p = apply(
        nsbox,
        pod(
            "sa",
            container("app", SLEEP, volumeMounts=[{"name": "t", "mountPath": "/t"}]),
            volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
        ),
        check=False,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: nsbox has no API server "
            "to issue service account tokens or trust bundles"
        )
    )
    assert not os.listdir(os.path.join(nsbox.root, "pods")) if os.path.isdir(os.path.join(nsbox.root, "pods")) else True
