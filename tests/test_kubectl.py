"""What a kubectl user notices: `logs` on one stream with --tail/--since, `describe pod`
in kubectl's layout, conditions and the QoS class, and objects that are valid Kubernetes ones."""

from __future__ import annotations

import json
import os
import re
import types

import conftest
import pytest
import yaml
from conftest import validate_document, validate_object, wait_for

from nsbox import describe
from nsbox.model import (
    ContainerPort,
    ContainerSpec,
    DownwardFile,
    EnvFrom,
    EnvVar,
    KeyToPath,
    PodSpec,
    Projection,
    Resources,
    Volume,
    VolumeMount,
)
from nsbox.pods import PodView

# Each write waits until the watcher has recorded it (the root's logs are mounted into the
# container): two pipes cannot tell which of two quick writes came first.
ALTERNATE = (
    'for i in 1 2 3 4; do echo out$i; until grep -q " F out$i" /logs/*/alt/0.log; do sleep 0.01; done; '
    'echo err$i >&2; until grep -q " F err$i" /logs/*/alt/0.log; do sleep 0.01; done; done'
)
WRITTEN = [f"{s}{i}" for i in range(1, 5) for s in ("out", "err")]


def finished(nsbox, pod):
    wait_for(lambda: nsbox.container_state(pod)["state"].get("terminated"), what=f"{pod} to finish")


# --- logs


def test_logs_print_both_streams_on_stdout_in_the_order_written(nsbox):
    os.makedirs(os.path.join(nsbox.root, "logs"), exist_ok=True)
    uid = nsbox("pod", "create", "alt", "--restart", "Never", "--volume", f"logs={nsbox.root}/logs").stdout.strip()
    log = os.path.join(nsbox.root, "logs", f"default_alt_{uid}", "alt", "0.log")
    nsbox("run", "alt", "--pod", "alt", "--mount", "logs:/logs:ro", "--", "sh", "-c", ALTERNATE)
    finished(nsbox, "alt")
    assert nsbox.inspect("alt")["containers"][0]["logPath"] == log
    # the CRI file (an observer of what the watcher recorded) holds both streams interleaved
    with open(nsbox.inspect("alt")["containers"][0]["logPath"]) as f:
        recorded = [line.split(" ", 3)[1:] for line in f.read().splitlines()]
    assert recorded == [["stdout" if w.startswith("out") else "stderr", "F", w] for w in WRITTEN]
    p = nsbox("logs", "alt")
    assert p.stdout.splitlines() == WRITTEN and p.stderr == ""
    # --tail counts records of both streams; -1 is all of them
    assert nsbox("logs", "alt", "--tail", "3").stdout.splitlines() == ["err3", "out4", "err4"]
    assert nsbox("logs", "alt", "--tail", "-1").stdout.splitlines() == WRITTEN
    assert nsbox("logs", "alt", "--tail", "0").stdout == ""
    stamped = nsbox("logs", "alt", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == WRITTEN
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split(" ")[0]) for line in stamped)


def test_logs_since_and_since_time(nsbox):
    nsbox("run", "late", "--restart", "Never", "--", "sh", "-c", "echo early; sleep 1.2; echo late >&2")
    finished(nsbox, "late")
    stamps = dict(reversed(line.split(" ", 1)) for line in nsbox("logs", "late", "--timestamps").stdout.splitlines())
    assert nsbox("logs", "late", "--since-time", stamps["late"]).stdout == "late\n"
    assert nsbox("logs", "late", "--since-time", stamps["early"]).stdout == "early\nlate\n"
    assert nsbox("logs", "late", "--since-time", "2099-01-01T00:00:00Z").stdout == ""
    assert nsbox("logs", "late", "--since", "1h").stdout == "early\nlate\n"
    assert nsbox("logs", "late", "--since", "1h", "--tail", "1").stdout == "late\n"
    # --since counts back from now: wait until "late" is more than a second old
    import time

    from nsbox.logs import stamp_ns

    wait_for(lambda: time.time_ns() - stamp_ns(stamps["late"]) > 1.5e9, what="the records to age")
    assert nsbox("logs", "late", "--since", "1s").stdout == ""
    for args, message in (
        (["--since", "5"], 'invalid argument "5" for "--since" flag: time: invalid duration "5"'),
        (["--since=-2m"], "--since must be greater than 0"),
        (["--since-time", "yesterday"], 'invalid argument "yesterday" for "--since-time" flag'),
        (
            ["--since", "1s", "--since-time", stamps["late"]],
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
        (["--tail", "-2"], "--tail must be greater than or equal to -1"),
    ):
        p = nsbox("logs", "late", *args, check=False)
        assert p.returncode == 1 and p.stdout == "", args
        assert p.stderr.startswith(f"error: {message}") and p.stderr.count("\n") == 1, p.stderr


def test_logs_follow_and_previous_still_work(nsbox):
    nsbox(
        "run",
        "flip",
        "--restart",
        "OnFailure",
        "--",
        "sh",
        "-c",
        "echo run; echo oops >&2; [ -e /tmp/nsbx-flip-$PPID ] && sleep 0.5 && exit 0; exit 1",
    )
    wait_for(lambda: nsbox.container_state("flip")["restartCount"] >= 1, what="a restart")
    assert nsbox("logs", "flip", "--previous").stdout == "run\noops\n"
    nsbox("run", "tick", "--", "sh", "-c", "for i in 1 2 3; do echo tick$i; echo tock$i >&2; sleep 0.2; done")
    follow = nsbox("logs", "tick", "-f", timeout=30)
    assert follow.stdout.splitlines()[-2:] == ["tick3", "tock3"] and follow.stderr == ""


# --- describe, conditions, QoS class


def _pod_with_everything() -> PodSpec:
    app = ContainerSpec(
        name="app",
        command=["sh", "-c"],
        args=["serve\n--port 80"],
        image="nginx",
        ports=[ContainerPort(80), ContainerPort(53, name="dns", protocol="UDP", host_port=5353)],
        resources=Resources(cpu_millis=500, memory_bytes=2**27, cpu_request_millis=250, memory_request_bytes=2**26),
        env=[
            EnvVar("PLAIN", "a\nb"),
            EnvVar("ME", field_ref="metadata.name"),
            EnvVar("IP", field_ref="status.podIP"),
            EnvVar("CPU", resource="limits.cpu"),
            EnvVar("MEM", resource="requests.memory", divisor="1Mi"),
            EnvVar("LEVEL", ref_kind="configMap", ref_name="settings", ref_key="level"),
            EnvVar("PASSWORD", ref_kind="secret", ref_name="db", ref_key="password", optional=True),
        ],
        env_from=[EnvFrom("configMap", "settings"), EnvFrom("secret", "db", prefix="DB_", optional=True)],
        volume_mounts=[VolumeMount("conf", "/etc/conf", read_only=True), VolumeMount("scratch", "/data", sub_path="x")],
    )
    side = ContainerSpec(name="side", command=["sleep", "1000"])
    return PodSpec(
        name="web",
        namespace="shop",
        uid="u-1",
        labels={"tier": "front", "app": "web"},
        annotations={"team": "shop", "note": "x" * 150, "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        creation_timestamp="2026-01-01T00:00:00Z",
        containers=[app, side],
        init_containers=[ContainerSpec(name="setup", command=["true"])],
        volumes=[
            Volume("scratch", medium="Memory", size_limit=2**26),
            Volume("host", kind="hostPath", host_path="/srv"),
            Volume("conf", kind="configMap", sources=[Projection("configMap", "settings")]),
            Volume("creds", kind="secret", sources=[Projection("secret", "db", optional=True)]),
            Volume(
                "info",
                kind="downwardAPI",
                sources=[
                    Projection(
                        "downwardAPI",
                        files=[
                            DownwardFile("labels", field_ref="metadata.labels"),
                            DownwardFile("cpu", resource="limits.cpu", container="app"),
                        ],
                    )
                ],
            ),
            Volume(
                "all",
                kind="projected",
                sources=[
                    Projection("configMap", "settings", items=[KeyToPath("level", "lvl")]),
                    Projection("secret", "db"),
                    Projection("downwardAPI", files=[DownwardFile("n", "metadata.name")]),
                ],
            ),
        ],
    )


def _view(spec: PodSpec) -> PodView:
    recorded = {
        "phase": "Running",
        "startTime": "2026-01-01T00:00:01Z",
        "podIP": "10.0.0.7",
        "containers": [
            {
                "name": "setup",
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": "2026-01-01T00:00:01Z",
                        "finishedAt": "2026-01-01T00:00:02Z",
                    }
                },
            },
            {
                "name": "app",
                "restartCount": 1,
                "ready": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 137,
                        "signal": 9,
                        "reason": "Error",
                        "startedAt": "2026-01-01T00:00:02Z",
                        "finishedAt": "2026-01-01T00:00:04Z",
                    }
                },
            },
            {"name": "side", "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        ],
        "events": [
            {
                "type": "Normal",
                "reason": "Started",
                "time": "2026-01-01T00:00:05Z",
                "object": "app",
                "message": "Started container app",
            }
        ],
    }
    return PodView(None, spec, recorded, None, True)


CGROUPS = types.SimpleNamespace(
    version=2,
    hybrid=False,
    pod_path=lambda uid: f"nsbox/pod{uid}",
    container_path=lambda uid, name: f"nsbox/pod{uid}/{name}",
    procs=lambda path: [],
)


def test_describe_shows_what_kubectl_describe_shows_in_its_layout():
    text = describe.describe(_view(_pod_with_everything()), CGROUPS)
    lines = text.splitlines()
    assert lines[:6] == [
        "Name:         web",
        "Namespace:    shop",
        "Node:         <none>",
        lines[3],
        "Labels:       app=web",
        "              tier=front",
    ]
    assert re.fullmatch(r"Start Time:   \w{3}, 01 Jan 2026 \d\d:00:01 [+-]\d{4}", lines[3])
    on_a_node = _pod_with_everything()
    on_a_node.node_name = "vagrant"  # the machine's name, recorded at create
    assert describe.describe(_view(on_a_node), CGROUPS).splitlines()[2] == "Node:         vagrant"
    assert lines[6:9] == ["Annotations:  note:", "                " + "x" * 138 + "...", "              team: shop"]
    assert "Status:       Running" in lines and "IP:           10.0.0.7" in lines
    assert lines[lines.index("IPs:") + 1] == "  IP:  10.0.0.7"
    block = "\n".join(lines[lines.index("Containers:") : lines.index("Conditions:")])
    # kubectl's tabwriter aligns these five apart from State and below: "Command:" ends their block
    assert "\n  app:\n    Container ID:  \n    Image:         nginx\n    Image ID:      \n" in block
    assert "\n    Ports:         80/TCP, 53/UDP\n    Host Ports:    0/TCP, 5353/UDP\n" in block
    assert "\n    Command:\n      sh\n      -c\n    Args:\n      serve\n      --port 80\n" in block
    assert "\n    State:          Running\n      Started:      " in block
    assert re.search(
        r"\n    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    137\n"
        r"      Signal:       9\n      Started:      .*\n      Finished:     .*\n"
        r"    Ready:          True\n    Restart Count:  1\n",
        block,
    )
    assert (
        "\n    Limits:\n      cpu:     500m\n      memory:  128Mi\n"
        "    Requests:\n      cpu:     250m\n      memory:  64Mi\n" in block
    )
    assert (
        "\n    Environment Variables from:\n      settings  ConfigMap                 Optional: false\n"
        "      db        Secret with prefix 'DB_'  Optional: true\n"
    ) in block
    env = block[block.index("    Environment:\n") : block.index("    Mounts:")].splitlines()[1:]
    assert env == [
        "      PLAIN:     a",
        "                 b",
        "      ME:        web (v1:metadata.name)",
        "      IP:         (v1:status.podIP)",
        "      CPU:       1 (limits.cpu)",
        "      MEM:       64 (requests.memory)",
        "      LEVEL:     <set to the key 'level' of config map 'settings'>  Optional: false",
        "      PASSWORD:  <set to the key 'password' in secret 'db'>         Optional: true",
    ]
    assert '\n    Mounts:\n      /data from scratch (rw,path="x")\n      /etc/conf from conf (ro)\n' in block
    side = block[block.index("  side:") :]
    assert "    State:          Waiting\n      Reason:       CrashLoopBackOff\n" in side
    assert "    Environment:    <none>\n    Mounts:         <none>" in side
    init = text[text.index("Init Containers:") : text.index("\nContainers:\n")]
    assert "    State:          Terminated\n      Reason:       Completed\n      Exit Code:    0\n" in init
    conditions = lines[lines.index("Conditions:") + 1 : lines.index("Volumes:")]
    assert conditions == [
        "  Type                        Status",
        "  PodReadyToStartContainers   True ",
        "  Initialized                 True ",
        "  Ready                       False ",
        "  ContainersReady             False ",
        "  PodScheduled                True ",
    ]
    qos = next(i for i, line in enumerate(lines) if line.startswith("QoS Class:"))
    volumes = "\n".join(lines[lines.index("Volumes:") : qos]) + "\n"
    for expected in (
        "  scratch:\n    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)\n"
        "    Medium:     Memory\n    SizeLimit:  64Mi\n",
        "  host:\n    Type:          HostPath (bare host directory volume)\n    Path:          /srv\n"
        "    HostPathType:  <none>\n",
        "  conf:\n    Type:      ConfigMap (a volume populated by a ConfigMap)\n    Name:      settings\n"
        "    Optional:  false\n",
        "  creds:\n    Type:        Secret (a volume populated by a Secret)\n    SecretName:  db\n"
        "    Optional:    true\n",
        "  info:\n    Type:  DownwardAPI (a volume populated by information about the pod)\n    Items:\n"
        "      metadata.labels -> labels\n      limits.cpu -> cpu\n",
        "  all:\n    Type:           Projected (a volume that contains injected data from multiple sources)\n"
        "    ConfigMapName:  settings\n    Optional:       false\n    SecretName:     db\n"
        "    Optional:       false\n    DownwardAPI:    true\n",
    ):
        assert expected in volumes, expected
    # as in kubectl, the last volume's fields, QoS Class, Node-Selectors and Tolerations share a column
    assert lines[qos : qos + 3] == [
        "QoS Class:          Burstable",
        "Node-Selectors:     <none>",
        "Tolerations:        <none>",
    ]
    assert re.search(
        r"\nEvents:\n  Type    Reason   Age +From +Message\n  ----    ------   ---- +---- +-------\n"
        r"  Normal  Started  \S+ +container/app  Started container app\n",
        text,
    )
    assert "\nRuntime (nsbox):\n  UID:" in text and "    Cgroup:  nsbox/podu-1/app" in text


def test_describe_never_shows_a_secret_value(nsbox):
    value = "s3cr3t-Value-42"
    nsbox(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "db"},
                        "stringData": {"password": value},
                    },
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "settings"},
                        "data": {"level": "debug"},
                    },
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "quiet"},
                        "spec": {
                            "volumes": [{"name": "creds", "secret": {"secretName": "db"}}],
                            "containers": [
                                {
                                    "name": "c",
                                    "command": ["sleep", "300"],
                                    "ports": [{"containerPort": 8080}],
                                    "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}},
                                    "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": True}],
                                    "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}],
                                    "env": [
                                        {"name": "TOKEN", "value": "v"},
                                        {
                                            "name": "PASSWORD",
                                            "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                                        },
                                        {
                                            "name": "LEVEL",
                                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
                                        },
                                    ],
                                }
                            ],
                        },
                    },
                ],
            }
        ),
    )
    pid = nsbox.pid("quiet")
    with open(f"/proc/{pid}/environ", "rb") as f:  # the container does get the value
        assert f"PASSWORD={value}".encode() in f.read().split(b"\0")
    described = nsbox("describe", "pod", "quiet").stdout
    assert value not in described
    assert "      PASSWORD:  <set to the key 'password' in secret 'db'>         Optional: false\n" in described
    assert "      LEVEL:     <set to the key 'level' of config map 'settings'>  Optional: false\n" in described
    assert "    Environment Variables from:\n      db  Secret with prefix 'DB_'  Optional: false\n" in described
    assert "\n    Mounts:\n      /creds from creds (ro)\n" in described
    assert re.search(
        r"\n  creds:\n    Type:\s+Secret \(a volume populated by a Secret\)\n    SecretName:\s+db\n"
        r"    Optional:\s+false\n",
        described,
    )
    assert value not in nsbox("get", "pods", "quiet", "-o", "yaml").stdout
    nsbox("get", "secrets", "db", "-o", "yaml")  # checked against the schema by conftest
    nsbox("get", "configmaps", "-o", "json")
    assert "    Port:          8080/TCP\n    Host Port:     0/TCP\n" in described
    assert re.search(r"\n    Container ID:  nsbox://[-0-9a-f]+/c\n", described)
    assert "    Environment:\n      TOKEN:     v\n" in described
    assert "    Limits:\n      cpu:     200m\n      memory:  32Mi\n    Requests:\n      cpu:     200m\n" in described
    assert "QoS Class:" in described and "Guaranteed" in described
    assert re.search(r"\n  Ready +True \n", described)


def test_conditions_and_qos_class_in_get_output_are_stable(nsbox):
    nsbox("run", "q", "--cpu", "100m", "--memory", "16Mi", "--", "sleep", "300")
    nsbox.pid("q")
    wait_for(lambda: nsbox.pod("q")["status"]["conditions"][2]["status"] == "True", what="Ready")
    first = yaml.safe_load(nsbox("get", "pods", "q", "-o", "yaml").stdout)
    st = first["status"]
    assert st["qosClass"] == "Guaranteed"
    assert [(c["type"], c["status"]) for c in st["conditions"]] == [
        ("PodReadyToStartContainers", "True"),
        ("Initialized", "True"),
        ("Ready", "True"),
        ("ContainersReady", "True"),
        ("PodScheduled", "True"),
    ]
    assert first["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "100m", "memory": "16Mi"},
        "requests": {"cpu": "100m", "memory": "16Mi"},
    }
    again = nsbox.pod("q")["status"]["conditions"]
    assert again == st["conditions"]  # lastTransitionTime does not move between reads
    assert nsbox("get", "pods", "-o", "json").returncode == 0  # a List, validated item by item
    nsbox("run", "free", "--", "sleep", "300")
    assert nsbox.pod("free")["status"]["qosClass"] == "BestEffort"


# --- the schema check itself


@pytest.mark.skipif(
    conftest.kubernetes_validate is None and os.environ.get("NSBOX_TEST_VM") == "1",
    reason="the cgroup-v2 VM has no kubernetes-validate (Debian's packages only)",
)
def test_the_schema_check_catches_a_wrong_pod():
    good = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"qosClass": "BestEffort", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    validate_object(good)
    validate_document({"apiVersion": "v1", "kind": "List", "items": [good], "metadata": {"resourceVersion": ""}})
    wrong = [
        {**good, "spec": {"containers": [{"name": "c", "command": "sleep 1"}]}},  # not a list
        {**good, "spec": {"containers": [{"name": "c", "imagePullSecret": "x"}]}},  # unknown field
        {**good, "status": {"conditions": [{"type": "Ready", "status": True}]}},  # not a string
        {**good, "status": {"qos": "BestEffort"}},  # unknown status field
        {**good, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}},
    ]
    for obj in wrong:
        with pytest.raises(AssertionError, match="is not a valid Kubernetes"):
            validate_object(obj)
    with pytest.raises(AssertionError, match="is not a valid Kubernetes"):
        validate_document({"apiVersion": "v1", "kind": "List", "items": [good, wrong[1]]})


def test_describe_of_a_terminating_pod(nsbox):
    nsbox("run", "slow", "--", "sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300")
    nsbox.pid("slow")
    nsbox("delete", "pod", "slow", "--grace-period", "15", "--wait=false")
    described = nsbox("describe", "pod", "slow").stdout
    assert re.search(r"\nStatus:\s+Terminating \(lasts \d+s\)\nTermination Grace Period:\s+15s\n", described)
    assert re.search(r"\n  Ready\s+False \n", described)
    assert re.search(r"\n  Pod Status:\s+Terminating\n", described)
