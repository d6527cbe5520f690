"""Manifests: loading, validation messages, the warning/error policy, conversion.

Pure functions over files in a temporary directory: no root needed.
"""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

from nsbox import manifest
from nsbox.errors import NsboxError
from nsbox.model import ContainerSpec, EnvVar, Handler, PodSpec, Probe, Resources, SecurityContext, Volume, VolumeMount

REPO = __file__.rsplit("/tests/", 1)[0]


def write(tmp_path, text, name="pod.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def pod(spec=None, name="web", **metadata):
    """A minimal valid Pod object, with `spec` merged in."""
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **metadata},
        "spec": {"containers": [{"name": "app", "command": ["sleep", "60"]}]},
    }
    obj["spec"].update(spec or {})
    return obj


def convert(*objects, **kwargs):
    return manifest.pods_from_documents([(f"test#doc{i + 1}", o) for i, o in enumerate(objects)], **kwargs)


def problems(*objects, **kwargs):
    with pytest.raises(NsboxError) as err:
        convert(*objects, **kwargs)
    return str(err.value).split("\n")


def warnings(obj):
    return convert(obj)[1]


def container(**fields):
    return {"name": "app", "command": ["sleep", "60"], **fields}


# --- loading -------------------------------------------------------------------


def test_multi_document_yaml_skips_empty_documents(tmp_path):
    path = write(
        tmp_path,
        """\
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec: {containers: [{name: c, command: [/bin/true]}]}
        ---
        # only a comment
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: b}
        spec: {containers: [{name: c, command: [/bin/true]}]}
        """,
    )
    docs = manifest.load_documents(path)
    assert [label for label, _ in docs] == [f"{path}#doc1", f"{path}#doc3"]
    pods, _ = manifest.pods_from_documents(docs)
    assert [p.name for p in pods] == ["a", "b"]


def test_kind_list_is_flattened(tmp_path):
    path = write(
        tmp_path, json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod(name="a"), pod(name="b")]}), "pods.json"
    )
    docs = manifest.load_documents(path)
    assert [label.rsplit("#", 1)[1] for label, _ in docs] == ["doc1.items[0]", "doc1.items[1]"]
    assert [p.name for p in manifest.pods_from_documents(docs)[0]] == ["a", "b"]


def test_json_file_and_json_stream(tmp_path):
    path = write(tmp_path, json.dumps(pod(name="a")) + "\n" + json.dumps(pod(name="b")), "pods.json")
    assert [obj["metadata"]["name"] for _, obj in manifest.load_documents(path)] == ["a", "b"]


def test_flow_style_yaml_that_is_not_json(tmp_path):
    path = write(tmp_path, "{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: []}}")
    assert manifest.load_documents(path)[0][1]["metadata"] == {"name": "a"}


def test_stdin_is_read_for_dash(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(pod(name="from-stdin")).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    docs = manifest.load_documents("-")
    assert docs[0][0] == "STDIN#doc1"
    assert manifest.pods_from_documents(docs)[0][0].name == "from-stdin"


def test_a_directory_applies_its_manifest_files_in_order(tmp_path):
    (tmp_path / "b.yaml").write_text(json.dumps(pod(name="b")))
    (tmp_path / "a.json").write_text(json.dumps(pod(name="a")))
    (tmp_path / "notes.txt").write_text("not a manifest")
    docs = manifest.load_documents(str(tmp_path))
    assert [obj["metadata"]["name"] for _, obj in docs] == ["a", "b"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n bad: [\n")
    with pytest.raises(NsboxError) as err:
        manifest.load_documents(path)
    message = str(err.value)
    assert message.startswith(f"{path}: line ") and "\n" not in message


def test_json_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '{\n  "apiVersion": "v1",\n  "kind": \n}\n', "pod.json")
    with pytest.raises(NsboxError, match=r"pod\.json: line 4, column 1: Expecting value"):
        manifest.load_documents(path)


def test_duplicate_keys_are_rejected_as_kubernetes_strict_decoding_does(tmp_path):
    path = write(tmp_path, "apiVersion: v1\nkind: Pod\nkind: Pod\n")
    with pytest.raises(NsboxError, match=r'line 3, column 1: duplicate field "kind"'):
        manifest.load_documents(path)


BILLION_LAUGHS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: lol}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def apply_bounded(tmp_path, path: str) -> tuple[int, str, float, int]:
    """`nsbox apply -f PATH` under a 1 GiB address-space limit: exit code, stderr, seconds, peak RSS in KiB."""
    import resource
    import time

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    t = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "nsbox", "--root", str(tmp_path / "root"), "apply", "-f", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
        cwd=REPO,
    )
    assert p.stderr is not None
    err = p.stderr.read()
    p.stderr.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err.decode(), time.monotonic() - t, usage.ru_maxrss


@pytest.mark.parametrize(
    ("text", "name", "said"),
    [
        (BILLION_LAUGHS, "laughs.yaml", "aliases expand the document beyond 100000 values"),
        ("a: " + "[" * 10000 + "]" * 10000 + "\n", "deep.yaml", "nest"),  # libyaml's own limit, or ours
        ("data:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 2001)), "deep-block.yaml", "nest"),
        ('{"a": ' + "[" * 10000 + "]" * 10000 + "}", "deep.json", "nested deeper than 100 levels"),
    ],
    ids=["billion-laughs", "deep-flow-yaml", "deep-block-yaml", "deep-json"],
)
def test_hostile_yaml_is_one_error_line_quickly_in_bounded_memory(tmp_path, text, name, said):
    path = write(tmp_path, text, name)
    code, err, seconds, peak_kib = apply_bounded(tmp_path, path)
    assert code == 1, err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1 and said in err, err
    assert seconds < 20, seconds
    assert peak_kib < 300 * 1024, peak_kib


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    path = write(
        tmp_path,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: anchors}
        spec:
          containers:
          - &first {name: one, command: [sleep, "60"], env: &env [{name: A, value: "1"}]}
          - <<: *first
            name: two
            env: *env
        """,
    )
    ((_, obj),) = manifest.load_documents(path)
    one, two = obj["spec"]["containers"]
    assert two == {**one, "name": "two"}
    assert two["env"] == [{"name": "A", "value": "1"}]


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    path = write(tmp_path, "a: &a [1, *a]\n")
    with pytest.raises(NsboxError, match=r"the alias \*a refers to a node that contains it"):
        manifest.load_documents(path)


def test_a_manifest_over_3_mib_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * (3 * 1024 * 1024) + "\n")
    with pytest.raises(NsboxError, match=r"big\.yaml: larger than 3 MiB, the limit of a manifest"):
        manifest.load_documents(str(path))


def test_missing_file_is_one_error_line():
    with pytest.raises(NsboxError, match=r'the path "/no/such/pod.yaml" does not exist'):
        manifest.load_documents("/no/such/pod.yaml")


def test_timestamps_stay_strings_so_the_spec_is_json(tmp_path):
    path = write(
        tmp_path,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: web, creationTimestamp: 2024-05-01T10:00:00Z}
        spec: {containers: [{name: c, command: [/bin/true]}]}
        status: {startTime: 2024-05-01T10:00:00Z}
        """,
    )
    pods, warns = manifest.pods_from_documents(manifest.load_documents(path))
    assert warns == []
    json.dumps(pods[0].to_dict())


def test_no_documents_is_an_error(tmp_path):
    with pytest.raises(NsboxError, match="no objects passed to apply"):
        manifest.pods_from_documents(manifest.load_documents(write(tmp_path, "---\n")))


def test_yaml_is_imported_only_when_a_manifest_is_read():
    code = "import sys, nsbox.manifest, nsbox.kube; print('yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


# --- conversion ------------------------------------------------------------------


def test_a_minimal_pod_gets_the_defaults():
    (p,), warns = convert(pod())
    assert warns == []
    assert (p.name, p.namespace, p.restart_policy, p.termination_grace_period) == ("web", "default", "Always", 30)
    assert p.network == "loopback" and p.source == "manifest"
    assert p.containers[0].argv == ["sleep", "60"]


def test_namespace_comes_from_the_document_or_the_default():
    assert convert(pod(namespace="team"))[0][0].namespace == "team"
    assert convert(pod(), namespace="other")[0][0].namespace == "other"


def test_an_explicit_namespace_flag_must_match_the_document():
    assert problems(pod(namespace="team"), namespace="other", namespace_explicit=True) == [
        'the namespace from the provided object "team" does not match the namespace "other". '
        "You must pass '--namespace=team' to perform this operation."
    ]


def test_rich_manifest_converts_and_round_trips(tmp_path):
    (tmp_path / "rootfs").mkdir()
    obj = pod(
        {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 5,
            "activeDeadlineSeconds": 600,
            "hostname": "box",
            "shareProcessNamespace": True,
            "hostIPC": True,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "volumes": [
                {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "host", "hostPath": {"path": "/srv", "type": "DirectoryOrCreate"}},
                {"name": "scratch"},
            ],
            "initContainers": [
                {
                    "name": "prep",
                    "command": ["sh", "-c", "date > /data/x"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "containers": [
                {
                    "name": "app",
                    "image": str(tmp_path / "rootfs"),
                    "command": ["python3", "-m", "http.server"],
                    "args": ["8080"],
                    "workingDir": "/srv",
                    "stdin": True,
                    "tty": True,
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIPs"}}},
                        {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                    ],
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                        {"name": "host", "mountPath": "/host", "subPath": "sub/dir"},
                    ],
                    "securityContext": {
                        "privileged": False,
                        "capabilities": {"add": ["cap_net_admin"], "drop": ["ALL"]},
                        "runAsUser": 0,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                    },
                    "resources": {"limits": {"cpu": "1.5", "memory": "1Gi"}},
                    "lifecycle": {
                        "postStart": {"exec": {"command": ["touch", "/tmp/up"]}},
                        "preStop": {"sleep": {"seconds": 3}},
                    },
                }
            ],
        },
        labels={"tier": "front"},
        annotations={"nsbox.io/init": "true", "nsbox.io/backoff-max-seconds": "2"},
    )
    (p,), warns = convert(obj)
    assert warns == []
    assert (p.restart_policy, p.termination_grace_period, p.active_deadline_seconds) == ("OnFailure", 5, 600)
    assert (p.hostname, p.share_process_namespace, p.host_ipc, p.run_as_user) == ("box", True, True, 1000)
    assert p.annotations["nsbox.io/backoff-max-seconds"] == "2"
    assert [v.kind for v in p.volumes] == ["emptyDir", "hostPath", "emptyDir"]
    assert p.volumes[0].medium == "Memory" and p.volumes[0].size_limit == 64 * 2**20
    assert p.volumes[1].host_path_type == "DirectoryOrCreate"
    c = p.containers[0]
    assert c.image == str(tmp_path / "rootfs")
    assert c.argv == ["python3", "-m", "http.server", "8080"] and c.working_dir == "/srv"
    assert (c.stdin, c.tty, c.init, p.init_containers[0].init) == (True, True, True, True)
    assert c.env == [
        EnvVar("A", "1"),
        EnvVar("POD", field_ref="metadata.name"),
        EnvVar("IP", field_ref="status.podIP"),
        EnvVar("TIER", "front"),
    ]
    assert c.volume_mounts[0].read_only and c.volume_mounts[1].sub_path == "sub/dir"
    assert c.security.cap_add == ["NET_ADMIN"] and c.security.cap_drop == ["ALL"]
    assert c.security.run_as_user == 0 and c.security.allow_privilege_escalation is False
    assert c.security.read_only_root_filesystem
    assert (c.resources.cpu_millis, c.resources.memory_bytes) == (1500, 2**30)
    assert c.post_start == Handler("exec", command=["touch", "/tmp/up"]) and c.pre_stop == Handler("sleep", seconds=3)

    stored = json.loads(json.dumps(p.to_dict()))
    assert PodSpec.from_dict(stored) == p


def test_host_network_and_the_network_annotation():
    assert convert(pod({"hostNetwork": True}))[0][0].network == "host"
    assert convert(pod(annotations={"nsbox.io/network": "bridge"}))[0][0].network == "bridge"
    assert problems(pod({"hostNetwork": True}, annotations={"nsbox.io/network": "bridge"})) == [
        'metadata.annotations[nsbox.io/network]: Invalid value: "bridge": conflicts with spec.hostNetwork: true'
    ]
    assert problems(pod(annotations={"nsbox.io/network": "overlay"})) == [
        'metadata.annotations[nsbox.io/network]: Unsupported value: "overlay": supported values: "bridge", "loopback"'
    ]


def test_nsbox_annotation_values_are_checked():
    assert problems(pod(annotations={"nsbox.io/init": "yes", "nsbox.io/backoff-base-seconds": "soon"})) == [
        'metadata.annotations[nsbox.io/init]: Unsupported value: "yes": supported values: "true", "false"',
        'metadata.annotations[nsbox.io/backoff-base-seconds]: Invalid value: "soon": must be a number of seconds > 0',
    ]
    assert warnings(pod(annotations={"nsbox.io/netwrok": "bridge"}))[0].startswith(
        "metadata.annotations[nsbox.io/netwrok]: ignored (unknown nsbox annotation"
    )
    # the pod cgroup's limits: a bad value fails the apply, not the pod after it
    found = problems(pod(annotations={"nsbox.io/pids-limit": "lots", "nsbox.io/pod-memory": "1Qi"}))
    assert found[0] == (
        'metadata.annotations[nsbox.io/pids-limit]: Invalid value: "lots": must be a whole number of processes > 0'
    )
    assert found[1].startswith('metadata.annotations[nsbox.io/pod-memory]: Invalid value: "1Qi"')
    assert problems(pod(annotations={"nsbox.io/pids-limit": "0"}))
    (p,), _ = convert(pod(annotations={"nsbox.io/pids-limit": "64", "nsbox.io/pod-cpu": "500m"}))
    assert p.annotations["nsbox.io/pids-limit"] == "64"


def test_zero_limits_mean_no_limit():
    (p,), _ = convert(pod({"containers": [container(resources={"limits": {"cpu": 0, "memory": "0"}})]}))
    assert p.containers[0].resources == Resources()


def test_service_account_name_field_ref_is_the_name_the_api_server_would_store():
    sa_env = [{"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]
    (p,), _ = convert(pod({"containers": [container(env=sa_env)]}))
    assert p.containers[0].env == [EnvVar("SA", "default")]  # the admission plugin's default
    (p,), _ = convert(pod({"serviceAccountName": "robot", "containers": [container(env=sa_env)]}))
    assert p.containers[0].env == [EnvVar("SA", "robot")]


# --- errors ---------------------------------------------------------------------------


def test_container_name_required():
    assert problems(pod({"containers": [{"command": ["true"]}]})) == ["spec.containers[0].name: Required value"]


def test_duplicate_container_names_also_across_init_containers():
    assert problems(pod({"containers": [container(), container()]})) == [
        'spec.containers[1].name: Duplicate value: "app"'
    ]
    assert problems(pod({"initContainers": [container()]})) == ['spec.containers[0].name: Duplicate value: "app"']


def test_pod_name_is_a_subdomain():
    assert problems(pod(name="Web_1")) == [
        'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def test_container_name_is_a_label():
    assert problems(pod({"containers": [container(name="Web_1")]})) == [
        'spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower '
        "case alphanumeric characters or '-', and must start and end with an alphanumeric character "
        "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    ]


def test_pod_name_required():
    assert problems(pod(name=None)) == ["metadata.name: Required value: name or generateName is required"]
    assert problems({**pod(), "metadata": {"generateName": "web-"}}) == [
        "metadata.generateName: Forbidden: nsbox needs metadata.name (kubectl apply cannot use generateName either)"
    ]


def test_volume_mount_must_name_a_volume():
    assert problems(pod({"containers": [container(volumeMounts=[{"name": "data", "mountPath": "/data"}])]})) == [
        'spec.containers[0].volumeMounts[0].name: Not found: "data"'
    ]


@pytest.mark.parametrize("spec_fields", [{}, {"command": None}, {"command": []}, {"args": ["x"]}])
def test_a_container_without_an_image_needs_a_command(spec_fields):
    c = {"name": "app", **spec_fields}
    assert problems(pod({"containers": [c]})) == [
        "spec.containers[0].command: Required value: a container without an image "
        "(or in a pod annotated nsbox.io/host-root) runs on the host's files"
    ]


def test_a_container_with_an_image_runs_it_without_a_command():
    (p,), warns = convert(pod({"containers": [{"name": "app", "image": "busybox"}]}))
    c = p.containers[0]
    assert (c.image, c.command, c.image_pull_policy, c.runs_image) == ("busybox", [], "Always", True)
    assert warns == []


@pytest.mark.parametrize(
    ("image", "policy", "expected"),
    [
        ("busybox", None, "Always"),
        ("busybox:latest", None, "Always"),
        ("localhost:5000/app", None, "Always"),
        ("busybox:1.36", None, "IfNotPresent"),
        ("localhost:5000/app:1", None, "IfNotPresent"),
        ("busybox@sha256:" + "a" * 64, None, "IfNotPresent"),
        ("busybox", "Never", "Never"),
        ("busybox:1", "Always", "Always"),
    ],
)
def test_image_pull_policy_has_the_api_servers_default(image, policy, expected):
    fields = {"imagePullPolicy": policy} if policy else {}
    (p,), _ = convert(pod({"containers": [{"name": "app", "image": image, **fields}]}))
    assert p.containers[0].image_pull_policy == expected


def test_an_unknown_pull_policy_is_refused():
    assert problems(pod({"containers": [container(image="busybox", imagePullPolicy="Sometimes")]})) == [
        'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "IfNotPresent", "Never"'
    ]


def test_the_host_root_annotation_keeps_the_host_view_with_a_warning():
    obj = pod({"containers": [{"name": "app", "image": "nginx:1.25"}]}, annotations={"nsbox.io/host-root": "true"})
    assert problems(obj) == [
        "spec.containers[0].command: Required value: a container without an image "
        "(or in a pod annotated nsbox.io/host-root) runs on the host's files"
    ]
    (p,), warns = convert(
        pod({"containers": [container(image="nginx:1.25")]}, annotations={"nsbox.io/host-root": "true"})
    )
    assert (p.containers[0].image, p.containers[0].runs_image) == ("nginx:1.25", False)
    assert warns == [
        "spec.containers[0].image: not used: the pod is annotated nsbox.io/host-root, "
        "so the container sees the host's files"
    ]


def test_run_as_non_root_without_a_user_waits_for_the_image_user():
    sc = {"runAsNonRoot": True}
    (p,), _ = convert(pod({"securityContext": sc, "containers": [{"name": "app", "image": "busybox"}]}))
    assert p.containers[0].security.run_as_non_root is True
    assert problems(pod({"securityContext": sc, "containers": [container()]})) != []


def test_wrong_types_name_the_field():
    assert problems(pod({"containers": [container(command="x")]})) == [
        'spec.containers[0].command: Invalid value: "x": must be a list of strings'
    ]
    assert problems(pod({"containers": [container(args=["--port", 8080])]})) == [
        "spec.containers[0].args[1]: Invalid value: 8080: must be a string"
    ]
    assert problems(pod({"terminationGracePeriodSeconds": "30"})) == [
        'spec.terminationGracePeriodSeconds: Invalid value: "30": must be an integer'
    ]
    assert problems(pod({"hostNetwork": "yes"})) == ['spec.hostNetwork: Invalid value: "yes": must be a boolean']
    assert problems(pod(labels={"version": 2})) == ["metadata.labels[version]: Invalid value: 2: must be a string"]
    assert problems(pod({"containers": [container(env=[{"name": "PORT", "value": 8080}])]})) == [
        "spec.containers[0].env[0].value: Invalid value: 8080: must be a string"
    ]
    assert problems(pod({"containers": "app"})) == ['spec.containers: Invalid value: "app": must be a list']


def test_kind_and_api_version():
    assert problems({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}) == [
        'unsupported kind "Deployment" (nsbox reads v1 Pods, ConfigMaps and Secrets)'
    ]
    assert problems({**pod(), "apiVersion": "v2"}) == [
        'unsupported apiVersion "v2" for kind Pod (nsbox reads v1 Pods, ConfigMaps and Secrets)'
    ]
    assert problems({"metadata": {"name": "x"}}) == ["error validating data: [apiVersion not set, kind not set]"]
    assert problems(["not", "an", "object"]) == ['a document must be an object, not ["not","an","object"]']


def test_unknown_fields_are_errors_as_in_strict_validation():
    obj = pod()
    obj["spec"]["containrs"] = []
    obj["spec"]["containers"][0]["comand"] = ["x"]
    obj["metdata"] = {}
    assert problems(obj) == [
        'unknown field "metdata"',
        'unknown field "spec.containrs"',
        'unknown field "spec.containers[0].comand"',
    ]


def test_several_problems_are_reported_together():
    obj = pod(
        {
            "restartPolicy": "Sometimes",
            "containers": [
                {"name": "app", "command": ["a"], "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
                {"name": "app"},
            ],
        }
    )
    assert problems(obj) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        'spec.containers[0].volumeMounts[0].name: Not found: "data"',
        'spec.containers[1].name: Duplicate value: "app"',
        "spec.containers[1].command: Required value: a container without an image "
        "(or in a pod annotated nsbox.io/host-root) runs on the host's files",
    ]


def test_one_invalid_document_means_no_pods_at_all():
    with pytest.raises(NsboxError) as err:
        convert(pod(name="good"), pod(name="bad", spec={"containers": []}), pod(name="also-good"))
    assert str(err.value) == "test#doc2: spec.containers: Required value"


def test_the_same_pod_twice_in_one_apply_is_an_error():
    assert problems(pod(), pod()) == ['test#doc2: metadata.name: Duplicate value: "web" (also in test#doc1)']


def test_unsupported_volume_types_are_errors():
    assert problems(pod({"volumes": [{"name": "pvc", "persistentVolumeClaim": {"claimName": "x"}}]})) == [
        "spec.volumes[0].persistentVolumeClaim: Unsupported value: nsbox provides emptyDir, hostPath, "
        "configMap, secret, downwardAPI and projected volumes only"
    ]


def test_volume_checks():
    assert problems(
        pod(
            {
                "volumes": [
                    {"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}},
                    {"name": "b", "hostPath": {"path": "relative"}},
                    {"name": "c", "hostPath": {"path": "/x/../etc", "type": "Dir"}},
                    {"name": "d", "emptyDir": {"medium": "HugePages", "sizeLimit": "lots"}},
                    {"name": "d"},
                ]
            }
        )
    ) == [
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        'spec.volumes[1].hostPath.path: Invalid value: "relative": must be an absolute path',
        "spec.volumes[2].hostPath.path: Invalid value: \"/x/../etc\": must not contain '..'",
        'spec.volumes[2].hostPath.type: Unsupported value: "Dir": supported values: "", "DirectoryOrCreate", '
        '"Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"',
        'spec.volumes[3].emptyDir.medium: Unsupported value: "HugePages": supported values: "", "Memory"',
        'spec.volumes[3].emptyDir.sizeLimit: Invalid value: "lots": quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.volumes[4].name: Duplicate value: "d"',
    ]


def test_sub_path_may_not_escape_the_volume():
    mounts = [
        {"name": "v", "mountPath": "/a", "subPath": "/etc"},
        {"name": "v", "mountPath": "/b", "subPath": "x/../../etc"},
        {"name": "v", "mountPath": "c"},
        {"name": "v", "mountPath": "/a"},
    ]
    assert problems(
        pod({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [container(volumeMounts=mounts)]})
    ) == [
        'spec.containers[0].volumeMounts[0].subPath: Invalid value: "/etc": must be a relative path',
        "spec.containers[0].volumeMounts[1].subPath: Invalid value: \"x/../../etc\": must not contain '..'",
        'spec.containers[0].volumeMounts[2].mountPath: Invalid value: "c": must be an absolute path',
        'spec.containers[0].volumeMounts[3].mountPath: Invalid value: "/a": must be unique',
    ]


def test_host_ports_are_errors_except_on_the_host_network():
    ports = [{"containerPort": 80, "hostPort": 8080}]
    assert problems(pod({"containers": [container(ports=ports)]})) == [
        "spec.containers[0].ports[0].hostPort: Forbidden: nsbox does not forward host ports; use hostNetwork, "
        "or the annotation nsbox.io/network: bridge and the pod IP"
    ]
    # ports are kept (describe, get -o yaml): no warning
    assert warnings(pod({"containers": [container(ports=[{"containerPort": 80, "hostPort": 0}])]})) == []
    host = pod({"hostNetwork": True, "containers": [container(ports=[{"containerPort": 80, "hostPort": 80}])]})
    assert warnings(host) == []


def test_lifecycle_handlers():
    def hook(handler):
        return pod(
            {"containers": [container(lifecycle={"preStop": handler}, ports=[{"name": "web", "containerPort": 8080}])]}
        )

    def pre_stop(handler):
        return convert(hook(handler))[0][0].containers[0].pre_stop

    assert pre_stop({"httpGet": {"path": "/quit", "port": "web"}}) == Handler(
        "httpGet", path="/quit", port=8080, port_name="web"
    )
    assert pre_stop({"tcpSocket": {"port": 80, "host": "127.0.0.2"}}) == Handler("tcpSocket", port=80, host="127.0.0.2")
    assert pre_stop({"sleep": {"seconds": 2}}) == Handler("sleep", seconds=2)
    assert problems(hook({"grpc": {"port": 80}})) == ['unknown field "spec.containers[0].lifecycle.preStop.grpc"']
    assert problems(hook({})) == ["spec.containers[0].lifecycle.preStop: Required value: must specify a handler type"]
    assert problems(hook({"exec": {"command": []}})) == [
        "spec.containers[0].lifecycle.preStop.exec.command: Required value"
    ]
    assert problems(hook({"exec": {"command": ["x"]}, "sleep": {"seconds": 1}})) == [
        "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type"
    ]
    assert problems(hook({"tcpSocket": {"port": "nope"}})) == [
        'spec.containers[0].lifecycle.preStop.tcpSocket.port: Invalid value: "nope": '
        "must be the name of one of the container's ports"
    ]


def test_probes_take_the_api_servers_defaults():
    c = convert(
        pod(
            {
                "containers": [
                    container(
                        ports=[{"name": "liveness-port", "containerPort": 8080}],
                        livenessProbe={"httpGet": {"path": "/healthz", "port": "liveness-port"}, "periodSeconds": 5},
                        readinessProbe={"tcpSocket": {"port": 8080}, "initialDelaySeconds": 15},
                        startupProbe={
                            "exec": {"command": ["cat", "/tmp/healthy"]},
                            "failureThreshold": 30,
                            "terminationGracePeriodSeconds": 60,
                        },
                    )
                ]
            }
        )
    )[0][0].containers[0]
    assert c.liveness_probe == Probe(
        Handler("httpGet", path="/healthz", port=8080, port_name="liveness-port"), period=5
    )
    assert c.readiness_probe == Probe(Handler("tcpSocket", port=8080), initial_delay=15)
    assert c.startup_probe == Probe(Handler("exec", command=["cat", "/tmp/healthy"]), failure_threshold=30, grace=60)
    grpc = convert(pod({"containers": [container(livenessProbe={"grpc": {"port": 2379}})]}))[0][0].containers[0]
    assert grpc.liveness_probe == Probe(Handler("grpc", port=2379))


def test_probe_validation_in_the_api_servers_words():
    def probe(kind="livenessProbe", **fields):
        return pod({"containers": [container(ports=[{"name": "http", "containerPort": 80}], **{kind: fields})]})

    where = "spec.containers[0].livenessProbe"
    assert problems(probe()) == [f"{where}: Required value: must specify a handler type"]
    assert problems(probe(exec={"command": ["true"]}, tcpSocket={"port": 80})) == [
        f"{where}.tcpSocket: Forbidden: may not specify more than 1 handler type"
    ]
    assert problems(probe(sleep={"seconds": 1})) == [f'unknown field "{where}.sleep"']
    assert problems(probe(exec={"command": ["true"]}, successThreshold=2)) == [
        f"{where}.successThreshold: Invalid value: 2: must be 1"
    ]
    assert problems(probe("startupProbe", exec={"command": ["true"]}, successThreshold=3)) == [
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 3: must be 1"
    ]
    assert (
        convert(probe("readinessProbe", exec={"command": ["true"]}, successThreshold=3))[0][0]
        .containers[0]
        .readiness_probe.success_threshold
        == 3
    )
    assert problems(probe("readinessProbe", exec={"command": ["true"]}, terminationGracePeriodSeconds=5)) == [
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: "
        "must not be set for readinessProbes"
    ]
    assert problems(probe(exec={"command": ["true"]}, periodSeconds=-1, terminationGracePeriodSeconds=0)) == [
        f"{where}.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        f"{where}.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
    ]
    assert problems(probe(httpGet={"port": 0})) == [
        f"{where}.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"
    ]
    assert problems(probe(httpGet={"port": "Bad_Name"})) == [
        f'{where}.httpGet.port: Invalid value: "Bad_Name": '
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    ]
    assert problems(probe(httpGet={"port": "metrics"})) == [
        f'{where}.httpGet.port: Invalid value: "metrics": must be the name of one of the container\'s ports'
    ]
    assert problems(probe(httpGet={"port": "http", "scheme": "FTP"})) == [
        f'{where}.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS"'
    ]
    assert problems(probe(httpGet={"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}))[0].startswith(
        f'{where}.httpGet.httpHeaders: Invalid value: "Bad Header": a valid HTTP header must consist of'
    )
    assert problems(probe(grpc={"port": 70000})) == [
        f"{where}.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive"
    ]
    live = {"exec": {"command": ["true"]}}
    init = pod({"initContainers": [container(name="init", livenessProbe=live)], "containers": [container()]})
    assert problems(init) == [
        "spec.initContainers[0].livenessProbe: Forbidden: "
        "may not be set for init containers without restartPolicy=Always"
    ]
    assert problems(probe(exec={"command": ["true"]}, timeoutSeconds="1")) == [
        f'{where}.timeoutSeconds: Invalid value: "1": must be an integer'
    ]


def test_env_sources():
    def env(*entries):
        return pod({"containers": [container(env=list(entries))]})

    assert problems(env({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}))[0].startswith(
        'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "status.hostIP": '
        'supported values: "metadata.name", "metadata.namespace", "metadata.uid", "status.podIP"'
    )
    assert problems(env({"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})) == [
        'spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty'
    ]
    assert problems(env({"name": "A=B", "value": "v"}))[0].startswith(
        'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name'
    )
    assert problems(env({"value": "v"})) == ["spec.containers[0].env[0].name: Required value"]
    assert warnings(env({"name": "X", "value": "1"}, {"name": "X", "value": "2"})) == [
        'spec.containers[0].env[1]: hides previous definition of "X", which may be dropped when using apply'
    ]


def test_env_references_to_objects_and_resources():
    c = container(
        env=[
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a.b", "optional": True}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        ],
        envFrom=[{"configMapRef": {"name": "cm"}, "prefix": "P_"}, {"secretRef": {"name": "s", "optional": True}}],
    )
    [p], _ = convert(pod({"containers": [c]}))
    env, env_from = p.containers[0].env, p.containers[0].env_from
    assert (env[0].ref_kind, env[0].ref_name, env[0].ref_key, env[0].optional) == ("configMap", "cm", "a.b", True)
    assert (env[1].ref_kind, env[1].ref_name, env[1].ref_key, env[1].optional) == ("secret", "s", "k", False)
    assert (env[2].resource, env[2].resource_container, env[2].divisor) == ("requests.cpu", "", "1m")
    assert [(e.kind, e.name, e.prefix, e.optional) for e in env_from] == [
        ("configMap", "cm", "P_", False),
        ("secret", "s", "", True),
    ]


def test_env_reference_checks():
    def env(*entries, env_from=()):
        return pod({"containers": [container(env=list(entries), envFrom=list(env_from))]})

    assert problems(env({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "Bad_Name", "key": "a/b"}}})) == [
        'spec.containers[0].env[0].valueFrom.configMapKeyRef.name: Invalid value: "Bad_Name": a lowercase RFC '
        "1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and "
        "end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "a/b": a valid config key '
        "must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
    ]
    assert problems(env({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}})) == [
        "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value"
    ]
    assert problems(
        env(
            {
                "name": "X",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}, "fieldRef": {"fieldPath": "metadata.name"}},
            }
        )
    ) == [
        'spec.containers[0].env[0].valueFrom: Invalid value: "": may not have more than one field specified at a time'
    ]
    assert problems(
        env({"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Mi"}}})
    ) == [
        'spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: "limits.cpu": only '
        "divisor's values 1m and 1 are supported with the cpu resource"
    ]
    assert problems(env({"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.pids"}}}))[0] == (
        'spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.pids": '
        'supported values: "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", '
        '"requests.ephemeral-storage", "requests.memory"'
    )
    assert problems(
        env({"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "other"}}})
    ) == ['spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: Not found: "other"']
    assert problems(
        env(
            env_from=[
                {"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}},
                {"prefix": "A=", "configMapRef": {}},
                {"prefix": "P"},
            ]
        )
    ) == [
        'spec.containers[0].envFrom: Invalid value: "": may not have more than one field specified at a time',
        'spec.containers[0].envFrom[1].prefix: Invalid value: "A=": a valid environment variable name must '
        "consist only of printable ASCII characters other than '='",
        "spec.containers[0].envFrom[1].configMapRef.name: Required value",
        'spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`',
    ]
    assert problems(env({"name": "X", "valueFrom": {"configMapKeyRef": {"key": "k"}}}))[0].startswith(
        'spec.containers[0].env[0].valueFrom.configMapKeyRef.name: Invalid value: "": a lowercase RFC 1123'
    )


def test_config_volumes():
    [p], _ = convert(
        pod(
            {
                "volumes": [
                    {
                        "name": "c",
                        "configMap": {
                            "name": "cm",
                            "items": [{"key": "k", "path": "a/b", "mode": 0o600}],
                            "defaultMode": 0o640,
                            "optional": True,
                        },
                    },
                    {"name": "s", "secret": {"secretName": "sec"}},
                    {
                        "name": "d",
                        "downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]},
                    },
                    {
                        "name": "p",
                        "projected": {
                            "defaultMode": 0o400,
                            "sources": [{"configMap": {"name": "cm"}}, {"secret": {"name": "sec"}}],
                        },
                    },
                ]
            }
        )
    )
    c, s, d, pr = p.volumes
    assert (c.kind, c.default_mode, c.sources[0].name, c.sources[0].optional) == ("configMap", 0o640, "cm", True)
    assert [(i.key, i.path, i.mode) for i in c.sources[0].items] == [("k", "a/b", 0o600)]
    assert (s.kind, s.sources[0].kind, s.sources[0].name, s.default_mode) == ("secret", "secret", "sec", None)
    assert (d.kind, d.sources[0].files[0].path, d.sources[0].files[0].field_ref) == (
        "downwardAPI",
        "l",
        "metadata.labels",
    )
    assert (pr.kind, pr.default_mode, [x.kind for x in pr.sources]) == ("projected", 0o400, ["configMap", "secret"])


def test_config_volume_checks():
    assert problems(
        pod(
            {
                "volumes": [
                    {
                        "name": "a",
                        "configMap": {
                            "name": "cm",
                            "defaultMode": 0o1000,
                            "items": [
                                {"key": "", "path": "/abs"},
                                {"key": "k", "path": "x/../y"},
                                {"key": "k", "path": "..z", "mode": -1},
                            ],
                        },
                    },
                    {"name": "b", "secret": {}},
                    {
                        "name": "c",
                        "downwardAPI": {
                            "items": [
                                {"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}},
                                {"path": "r", "resourceFieldRef": {"resource": "limits.memory"}},
                                {
                                    "path": "both",
                                    "fieldRef": {"fieldPath": "metadata.name"},
                                    "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"},
                                },
                                {"path": "none"},
                            ]
                        },
                    },
                    {
                        "name": "d",
                        "projected": {
                            "sources": [
                                {
                                    "configMap": {"name": "x", "items": [{"key": "k", "path": "same"}]},
                                    "secret": {"name": "y"},
                                },
                                {"secret": {"name": "y", "items": [{"key": "k", "path": "same"}]}},
                                {
                                    "downwardAPI": {
                                        "items": [{"path": "same", "fieldRef": {"fieldPath": "metadata.uid"}}]
                                    }
                                },
                                {"clusterTrustBundle": {"path": "ca"}},
                            ]
                        },
                    },
                    {"name": "e", "configMap": {"name": "x"}, "secret": {"secretName": "y"}},
                ]
            }
        )
    ) == [
        "spec.volumes[0].configMap.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), "
        "both inclusive",
        "spec.volumes[0].configMap.items[0].key: Required value",
        'spec.volumes[0].configMap.items[0].path: Invalid value: "/abs": must be a relative path',
        "spec.volumes[0].configMap.items[1].path: Invalid value: \"x/../y\": must not contain '..'",
        "spec.volumes[0].configMap.items[2].path: Invalid value: \"..z\": must not start with '..'",
        "spec.volumes[0].configMap.items[2].mode: Invalid value: -1: must be a number between 0 and 0777 "
        "(octal), both inclusive",
        "spec.volumes[1].secret.secretName: Required value",
        # validateDownwardAPIVolumeFile reports under the source, without the item's index
        'spec.volumes[2].downwardAPI.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported '
        'values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", '
        '"metadata.uid"',
        "spec.volumes[2].downwardAPI.resourceFieldRef.containerName: Required value",
        'spec.volumes[2].downwardAPI: Invalid value: "resource": fieldRef and resourceFieldRef can '
        "not be specified simultaneously",
        "spec.volumes[2].downwardAPI: Required value: one of fieldRef and resourceFieldRef is required",
        "spec.volumes[3].projected.sources[0]: Forbidden: may not specify more than 1 volume type",
        'spec.volumes[3].projected: Invalid value: "y": conflicting duplicate paths',
        'spec.volumes[3].projected: Invalid value: "same": conflicting duplicate paths',
        "spec.volumes[3].projected.sources[3].clusterTrustBundle: Forbidden: nsbox has no API server to issue "
        "service account tokens or trust bundles",
        "spec.volumes[4].configMap: Forbidden: may not specify more than 1 volume type",
    ]


def test_security_context_checks():
    def sc(**fields):
        return pod({"containers": [container(securityContext=fields)]})

    assert problems(sc(capabilities={"add": ["CAP_FLY"]})) == [
        'spec.containers[0].securityContext.capabilities.add[0]: Invalid value: "CAP_FLY": unknown capability'
    ]
    assert problems(sc(privileged=True, allowPrivilegeEscalation=False)) == [
        'spec.containers[0].securityContext: Invalid value: {"allowPrivilegeEscalation":false,"privileged":true}: '
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
    ]
    assert problems(sc(runAsUser=-1)) == [
        "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"
    ]
    assert problems(sc(runAsNonRoot=True)) == [
        "spec.containers[0].securityContext.runAsNonRoot: Invalid value: true: the container would run as root: "
        "set runAsUser to a non-zero UID"
    ]
    assert convert(sc(runAsNonRoot=True, runAsUser=1000))[0][0].containers[0].security.run_as_user == 1000
    assert convert(pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 1}}))[0]


def test_pod_security_context_sysctls_that_are_not_namespaced_are_refused():
    assert problems(pod({"securityContext": {"fsGroup": 2000, "sysctls": [{"name": "x", "value": "1"}]}})) == [
        'spec.securityContext.sysctls[0].name: Forbidden: sysctl "x" is not namespaced: '
        "a pod may set only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"
    ]


def test_resources():
    def res(**fields):
        return pod({"containers": [container(resources=fields)]})

    assert problems(res(limits={"cpu": "1", "nvidia.com/gpu": 1})) == [
        "spec.containers[0].resources.limits[nvidia.com/gpu]: Unsupported value: "
        "nsbox limits cpu, memory and ephemeral-storage only"
    ]
    assert problems(res(limits={"cpu": "500m"}, requests={"cpu": "1"})) == [
        'spec.containers[0].resources.requests[cpu]: Invalid value: "1": must be less than or equal to cpu limit '
        "of 500m"
    ]
    assert problems(res(limits={"memory": "-1Mi"})) == [
        'spec.containers[0].resources.limits[memory]: Invalid value: "-1Mi": must be greater than or equal to 0'
    ]
    assert warnings(res(limits={"ephemeral-storage": "2Gi"}, requests={"ephemeral-storage": "1Gi"})) == []
    (spec,), _ = convert(res(limits={"ephemeral-storage": "2Gi"}))
    assert spec.containers[0].resources.ephemeral_storage_bytes == 2 << 30
    assert problems(res(limits={"ephemeral-storage": "1Gi"}, requests={"ephemeral-storage": "2Gi"})) == [
        'spec.containers[0].resources.requests[ephemeral-storage]: Invalid value: "2Gi": must be less than or '
        "equal to ephemeral-storage limit of 1Gi"
    ]


def test_pod_level_checks():
    assert problems(pod({"activeDeadlineSeconds": 0})) == [
        "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"
    ]
    assert problems(pod({"shareProcessNamespace": True, "hostPID": True})) == [
        "spec.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"
    ]
    assert problems(pod({"hostname": "My_Host"}))[0].startswith(
        'spec.hostname: Invalid value: "My_Host": a lowercase RFC 1123 label'
    )
    assert problems(pod({"ephemeralContainers": [{"name": "dbg"}]})) == [
        "spec.ephemeralContainers: Forbidden: cannot be set on create"
    ]
    assert convert(pod({"hostUsers": False}))[0][0].host_users is False
    assert problems(pod({"hostUsers": False, "hostNetwork": True, "hostPID": True, "hostIPC": True})) == [
        "spec.hostNetwork: Forbidden: when `hostUsers` is false",
        "spec.hostPID: Forbidden: when `hostUsers` is false",
        "spec.hostIPC: Forbidden: when `hostUsers` is false",
    ]
    assert convert(pod({"hostUsers": True, "os": {"name": "linux"}}))[1] == []
    assert problems(pod({"os": {"name": "windows"}})) == ["spec.os: Unsupported value: nsbox runs Linux pods"]
    assert problems(pod({"containers": [container(restartPolicy="Always")]})) == [
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
    ]


# --- warnings --------------------------------------------------------------------------


def test_negative_grace_period_is_stored_as_one_with_the_api_server_warning():
    (p,), warns = convert(pod({"terminationGracePeriodSeconds": -5}))
    assert p.termination_grace_period == 1
    assert warns == [
        "spec.terminationGracePeriodSeconds: must be >= 0; negative values are invalid and will be treated as 1"
    ]


def test_cluster_only_fields_get_one_warning_each_naming_the_field():
    obj = pod(
        {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {},
            "tolerations": [],
            "priorityClassName": "high",
            "serviceAccountName": "robot",
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "nodeName": "n1",
            "imagePullSecrets": [],
            "topologySpreadConstraints": [],
            "containers": [
                container(
                    image="nginx:1.25",
                    imagePullPolicy="Always",
                    ports=[{"containerPort": 80}],
                )
            ],
        }
    )
    warns = warnings(obj)
    fields = [w.split(": ignored (")[0] for w in warns]
    assert fields == [
        "spec.nodeSelector",
        "spec.affinity",
        "spec.tolerations",
        "spec.priorityClassName",
        "spec.serviceAccountName",
        "spec.dnsPolicy",
        "spec.schedulerName",
        "spec.nodeName",
        "spec.imagePullSecrets",
        "spec.topologySpreadConstraints",
    ]
    assert warns[0] == "spec.nodeSelector: ignored (scheduling: there is one machine)"


def test_null_fields_are_absent():
    assert warnings(pod({"nodeSelector": None, "volumes": None})) == []


def test_hostname_is_ignored_on_the_host_network():
    assert warnings(pod({"hostNetwork": True, "hostname": "box"})) == [
        "spec.hostname: ignored (a hostNetwork pod has the host's hostname)"
    ]


def test_errors_carry_the_warnings_seen_so_far():
    with pytest.raises(NsboxError) as err:
        convert(pod({"nodeSelector": {"a": "b"}, "restartPolicy": "Bad"}))
    assert err.value.warnings == ["spec.nodeSelector: ignored (scheduling: there is one machine)"]


def test_policy_tables_do_not_overlap():
    warned, rejected = set(manifest.WARNED), set(manifest.REJECTED)
    handled = {f"{kind}.{field}" for kind, fields in manifest.HANDLED.items() for field in fields}
    assert not (warned & rejected) and not (warned & handled) and not (rejected & handled)


# --- back to a manifest --------------------------------------------------------------------


def cli_pod():
    return PodSpec(
        name="web",
        namespace="team",
        uid="1234",
        labels={"app": "web"},
        creation_timestamp="2024-01-01T00:00:00Z",
        volumes=[
            Volume("data"),
            Volume("mem", medium="Memory", size_limit=2**26),
            Volume("host", kind="hostPath", host_path="/srv", host_path_type="Directory"),
        ],
        containers=[
            ContainerSpec(
                name="app",
                command=["sh", "-c"],
                args=["echo hi"],
                working_dir="/tmp",
                env=[EnvVar("A", "1"), EnvVar("IP", field_ref="status.podIP")],
                volume_mounts=[VolumeMount("data", "/data", read_only=True, sub_path="x")],
                security=SecurityContext(privileged=True, cap_add=["NET_ADMIN"], run_as_user=5, run_as_group=6),
                resources=Resources(
                    cpu_millis=250, memory_bytes=2**27, cpu_request_millis=250, memory_request_bytes=2**27
                ),
                pre_stop=Handler("exec", command=["sh", "-c", "sleep 1"]),
                init=True,
                stdin=True,
                tty=True,
            )
        ],
        restart_policy="Never",
        termination_grace_period=7,
        active_deadline_seconds=60,
        network="bridge",
        host_pid=True,
        run_as_user=1,
        annotations={"nsbox.io/backoff-base-seconds": "0.5"},
    )


def test_cli_pod_becomes_a_manifest_that_applies_back_to_the_same_pod():
    original = cli_pod()
    obj = manifest.pod_to_manifest(original)
    assert obj["metadata"] == {
        "name": "web",
        "namespace": "team",
        "uid": "1234",
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": {"app": "web"},
        "annotations": {"nsbox.io/backoff-base-seconds": "0.5", "nsbox.io/network": "bridge", "nsbox.io/init": "true"},
    }
    c = obj["spec"]["containers"][0]
    assert c["resources"] == {
        "limits": {"cpu": "250m", "memory": "128Mi"},
        "requests": {"cpu": "250m", "memory": "128Mi"},
    }  # the CLI defaults them
    assert c["lifecycle"] == {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}
    assert obj["spec"]["volumes"][1] == {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}

    (applied,), warns = convert(json.loads(json.dumps(obj)))
    assert warns == []
    assert manifest.same_pod(original, applied)
    # The PodSpecs agree too, except that nsbox's settings also show as annotations.
    skip = ("uid", "creation_timestamp", "source", "manifest", "annotations")
    mine = {k: v for k, v in original.to_dict().items() if k not in skip}
    theirs = {k: v for k, v in applied.to_dict().items() if k not in skip}
    assert mine == theirs


def test_manifest_pod_shows_its_spec_normalised():
    obj = pod(
        {
            "terminationGracePeriodSeconds": -1,
            "nodeSelector": None,
            "volumes": [{"name": "v"}],
            "containers": [container(image="nginx", volumeMounts=[{"name": "v", "mountPath": "/v"}])],
        }
    )
    (p,), _ = convert(obj)
    p.uid = "u-1"
    p.containers.append(ContainerSpec(name="added", command=["true"]))
    shown = manifest.pod_to_manifest(p)
    assert shown["metadata"] == {"name": "web", "namespace": "default", "uid": "u-1"}
    spec = shown["spec"]
    assert "nodeSelector" not in spec
    assert spec["terminationGracePeriodSeconds"] == 1 and spec["restartPolicy"] == "Always"
    assert spec["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert [c["name"] for c in spec["containers"]] == ["app", "added"]
    assert spec["containers"][0]["image"] == "nginx"


def test_same_pod_sees_a_changed_spec():
    (a,), _ = convert(pod())
    (b,), _ = convert(pod())
    (c,), _ = convert(pod({"containers": [container(command=["sleep", "61"])]}))
    a.uid, b.uid = "1", "2"
    assert manifest.same_pod(a, b)
    assert not manifest.same_pod(a, c)


def test_pod_names_for_delete():
    docs = [("f#doc1", pod(name="a")), ("f#doc2", pod(name="b", namespace="team"))]
    assert manifest.pod_names_from_documents(docs, "default") == [("default", "a"), ("team", "b")]
    with pytest.raises(NsboxError, match='f#doc2: unsupported kind "Service"'):
        manifest.pod_names_from_documents([docs[0], ("f#doc2", {"apiVersion": "v1", "kind": "Service"})])


# --- ConfigMaps and Secrets beside pods (read by nsbox.objects)


def test_config_documents_are_routed_only_when_asked_for():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}}
    configs = []
    pods, warnings = convert(pod(), cm, configs=configs)
    assert [p.name for p in pods] == ["web"]
    assert configs == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"a": "b"},
            "metadata": {"name": "cfg", "namespace": "default"},
        }
    ]
    assert any('unsupported kind "ConfigMap"' in p for p in problems(pod(), cm))


def test_config_document_problems_carry_the_document_label():
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls"}
    found = problems(pod(), bad, configs=[])
    assert found == ["test#doc2: data[tls.crt]: Required value", "test#doc2: data[tls.key]: Required value"]


def test_delete_names_of_config_documents():
    docs = [("f#doc1", pod()), ("f#doc2", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})]
    configs = []
    assert manifest.pod_names_from_documents(docs, "ns", configs=configs) == [("ns", "web")]
    assert configs == [("Secret", "ns", "s")]


# --- groups, sysctls, host aliases ------------------------------------------------


def test_groups_sysctls_and_host_aliases_are_read_into_the_pod_spec():
    (p,), _ = convert(
        pod(
            {
                "securityContext": {
                    "fsGroup": 2000,
                    "fsGroupChangePolicy": "OnRootMismatch",
                    "supplementalGroups": [4000, 5000],
                    "supplementalGroupsPolicy": "Strict",
                    "sysctls": [
                        {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"},
                        {"name": "kernel.shm_rmid_forced", "value": "1"},
                        {"name": "net/ipv4/conf/eth0.100/forwarding", "value": "1"},
                    ],
                },
                "hostAliases": [
                    {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar"]},
                    {"ip": "2001:db8::1", "hostnames": ["six"]},
                ],
            }
        )
    )
    assert (p.fs_group, p.fs_group_change_policy) == (2000, "OnRootMismatch")
    assert (p.supplemental_groups, p.supplemental_groups_policy) == ([4000, 5000], "Strict")
    assert p.sysctls == {
        "net.ipv4.ip_local_port_range": "20000 30000",
        "kernel.shm_rmid_forced": "1",
        "net/ipv4/conf/eth0.100/forwarding": "1",
    }
    assert [(a.ip, a.hostnames) for a in p.host_aliases] == [
        ("10.1.2.3", ["foo.local", "bar"]),
        ("2001:db8::1", ["six"]),
    ]
    # get -o yaml keeps the object as written
    spec = manifest.pod_to_manifest(p)["spec"]
    assert spec["securityContext"]["sysctls"][0] == {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"}
    assert spec["hostAliases"][0] == {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar"]}


def test_group_fields_are_checked_as_the_api_server_does():
    assert problems(
        pod(
            {
                "securityContext": {
                    "fsGroup": -1,
                    "fsGroupChangePolicy": "Sometimes",
                    "supplementalGroups": [5, "x", 2**31],
                    "supplementalGroupsPolicy": "Loose",
                }
            }
        )
    ) == [
        "spec.securityContext.fsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive",
        'spec.securityContext.fsGroupChangePolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "OnRootMismatch"',
        'spec.securityContext.supplementalGroups[1]: Invalid value: "x": must be an integer',
        "spec.securityContext.supplementalGroups[2]: Invalid value: 2147483648: "
        "must be between 0 and 2147483647, inclusive",
        'spec.securityContext.supplementalGroupsPolicy: Unsupported value: "Loose": '
        'supported values: "Merge", "Strict"',
    ]


def test_sysctl_names_are_checked_as_the_api_server_does():
    def sysctls(*names, **spec):
        return pod({"securityContext": {"sysctls": [{"name": n, "value": "1"} for n in names]}, **spec})

    assert problems(sysctls("Net.ipv4.x", "net..x")) == [
        f'spec.securityContext.sysctls[{i}].name: Invalid value: "{n}": must have at most 253 characters and '
        r"match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"
        for i, n in enumerate(("Net.ipv4.x", "net..x"))
    ]
    assert problems(sysctls("net.ipv4.ip_forward", "net.ipv4.ip_forward")) == [
        'spec.securityContext.sysctls[1].name: Duplicate value: "net.ipv4.ip_forward"'
    ]
    assert problems(pod({"securityContext": {"sysctls": [{"value": "1"}]}})) == [
        "spec.securityContext.sysctls[0].name: Required value"
    ]
    assert problems(sysctls("vm.swappiness", "kernel.pid_max")) == [
        f'spec.securityContext.sysctls[{i}].name: Forbidden: sysctl "{n}" is not namespaced: '
        "a pod may set only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"
        for i, n in enumerate(("vm.swappiness", "kernel.pid_max"))
    ]


def test_sysctls_of_a_namespace_shared_with_the_host_are_refused():
    def sysctls(*names, **spec):
        return pod({"securityContext": {"sysctls": [{"name": n, "value": "1"} for n in names]}, **spec})

    assert problems(sysctls("net.ipv4.ip_forward", "kernel.sem", hostNetwork=True)) == [
        'spec.securityContext.sysctls[0].name: Invalid value: "net.ipv4.ip_forward": '
        "may not be specified when 'hostNetwork' is true"
    ]
    assert problems(
        sysctls("net.core.somaxconn", "kernel.shmmax", "kernel.msgmax", "kernel.sem", "fs.mqueue.msg_max", hostIPC=True)
    ) == [
        f"spec.securityContext.sysctls[{i}].name: Invalid value: \"{n}\": may not be specified when 'hostIPC' is true"
        for i, n in enumerate(("kernel.shmmax", "kernel.msgmax", "kernel.sem", "fs.mqueue.msg_max"), 1)
    ]


def test_host_aliases_need_an_ip_and_hostnames():
    assert problems(
        pod(
            {
                "hostAliases": [
                    {"ip": "10.0.0", "hostnames": ["a"]},
                    {"hostnames": ["b"]},
                    {"ip": "10.0.0.1"},
                    {"ip": "fe80::1%eth0", "hostnames": ["Bad_Name"]},
                    {"ip": "10.0.0.2", "hostnames": ["c"], "x": 1},
                ]
            }
        )
    ) == [
        'spec.hostAliases[0].ip: Invalid value: "10.0.0": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        "spec.hostAliases[1].ip: Required value",
        "spec.hostAliases[2].hostnames: Required value",
        'spec.hostAliases[3].ip: Invalid value: "fe80::1%eth0": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        'spec.hostAliases[3].hostnames[0]: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist '
        "of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'unknown field "spec.hostAliases[4].x"',
    ]


def test_a_pod_spec_with_groups_sysctls_and_aliases_round_trips_through_a_built_manifest():
    from nsbox.model import HostAlias

    spec = PodSpec(
        name="web",
        containers=[ContainerSpec(name="app", command=["sleep", "60"])],
        fs_group=2000,
        fs_group_change_policy="Always",
        supplemental_groups=[3, 4],
        supplemental_groups_policy="Merge",
        sysctls={"kernel.shm_rmid_forced": "1"},
        host_aliases=[HostAlias("10.0.0.9", ["nine"])],
    )
    (back,), _ = convert(manifest.pod_to_manifest(spec))
    assert (
        back.fs_group,
        back.fs_group_change_policy,
        back.supplemental_groups,
        back.supplemental_groups_policy,
        back.sysctls,
        back.host_aliases,
    ) == (2000, "Always", [3, 4], "Merge", {"kernel.shm_rmid_forced": "1"}, [HostAlias("10.0.0.9", ["nine"])])


def test_requests_are_read_and_default_to_the_limits():
    def res(**fields):
        (p,), _ = convert(pod({"containers": [container(resources=fields)]}))
        return p.containers[0].resources

    assert res(limits={"cpu": "500m", "memory": "64Mi"}) == Resources(500, 2**26, 500, 2**26)
    assert res(limits={"cpu": "1"}, requests={"cpu": "250m", "memory": "1Gi"}) == Resources(1000, None, 250, 2**30)
    assert res(requests={"memory": "1Mi"}) == Resources(None, None, None, 2**20)
    assert problems(
        pod({"containers": [container(resources={"limits": {"memory": "1Mi"}, "requests": {"memory": "2Mi"}})]})
    ) == [
        'spec.containers[0].resources.requests[memory]: Invalid value: "2Mi": must be less than or equal to '
        "memory limit of 1Mi"
    ]
    assert problems(pod({"containers": [container(resources={"requests": {"nvidia.com/gpu": 1}})]})) == [
        "spec.containers[0].resources.requests[nvidia.com/gpu]: Unsupported value: "
        "nsbox limits cpu, memory and ephemeral-storage only"
    ]


def test_ports_are_read_and_shown_again():
    from nsbox.model import ContainerPort

    (p,), _ = convert(
        pod(
            {
                "containers": [
                    container(ports=[{"containerPort": 80}, {"containerPort": 53, "name": "dns", "protocol": "UDP"}])
                ]
            }
        )
    )
    assert p.containers[0].ports == [ContainerPort(80), ContainerPort(53, name="dns", protocol="UDP")]
    (p,), _ = convert(pod({"hostNetwork": True, "containers": [container(ports=[{"containerPort": 8080}])]}))
    assert p.containers[0].ports == [ContainerPort(8080, host_port=8080)]
    assert problems(pod({"containers": [container(ports=[{"containerPort": 80, "protocol": "tcp"}])]})) == [
        'spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"'
    ]
    cli = PodSpec(
        name="web",
        containers=[
            ContainerSpec(
                "c", ["true"], ports=[ContainerPort(8080, name="http")], resources=Resources(cpu_request_millis=100)
            )
        ],
    )
    c = manifest.pod_to_manifest(cli)["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP", "name": "http"}]
    assert c["resources"] == {"requests": {"cpu": "100m"}}
    (back,), _ = convert(json.loads(json.dumps(manifest.pod_to_manifest(cli))))
    assert back.containers[0].ports == cli.containers[0].ports
    assert back.containers[0].resources == cli.containers[0].resources


def test_probes_and_handlers_round_trip_through_the_emitted_manifest():
    c = container(
        ports=[{"name": "web", "containerPort": 8080}],
        lifecycle={"postStart": {"tcpSocket": {"port": 8080}}, "preStop": {"sleep": {"seconds": 2}}},
        livenessProbe={"grpc": {"port": 2379, "service": "etcd"}, "terminationGracePeriodSeconds": 5},
        readinessProbe={
            "httpGet": {"port": "web", "scheme": "HTTPS", "httpHeaders": [{"name": "X-A", "value": "b"}]},
            "successThreshold": 2,
        },
        startupProbe={"exec": {"command": ["true"]}, "failureThreshold": 30},
    )
    spec = convert(pod({"containers": [c]}))[0][0]
    emitted = manifest.pod_to_manifest(spec)
    assert emitted["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == "web"
    again = convert(emitted)[0][0]
    assert again.containers == spec.containers
    assert PodSpec.from_dict(spec.to_dict()).containers == spec.containers  # pod.json round trip
    old = spec.to_dict()
    old["containers"][0]["pre_stop"] = ["sh", "-c", "true"]  # the state of a pod made before handlers had kinds
    assert PodSpec.from_dict(old).containers[0].pre_stop == Handler("exec", command=["sh", "-c", "true"])
