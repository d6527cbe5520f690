"""The Kubernetes documentation's ConfigMap, Secret, downward API, projected volume,
security context, sysctl and hostAliases examples, run through nsbox end to end.

Each test mirrors one example of a kubernetes.io task page (named in a comment with
the example file of the kubernetes/website repository, content/en/examples/...):
the same object names, labels, keys, items, modes, env references and commands,
written here as Python data. They change only what the host view needs:

- `image:` stays as the docs have it, and every pod gets the annotation
  `nsbox.io/host-root: "true"` (added by `apply` here): the images are recorded, not
  pulled — these tests run offline — and the container runs the host's files (so
  `sh` is Debian's dash, not busybox). test_images.py runs real images.
- A container the docs leave to its image's entrypoint (nginx, an `args`-only
  busybox) gets a `command`, since it runs on the host's files.

What the page says the user sees is checked through the nsbox CLI (`create`,
`apply -f -`, `get`, `exec`, `logs`) and, where the docs' own command cannot show it
on this host, from outside: /proc/PID/root, /proc/PID/status, stat and nsenter.
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import re
import stat
import subprocess
from typing import Any

import pytest
import yaml
from conftest import wait_for
from test_apply import in_container, proc_status, read, terminated

BUSYBOX = "registry.k8s.io/busybox:1.27.2"


@pytest.fixture(autouse=True)
def quick_teardown(nsbox):
    """The docs' containers run `sleep` as PID 1, which ignores SIGTERM: a grace period of
    1 s ends them sooner than the force delete of the shared teardown (at least 2 s, as
    the kubelet's minimum)."""
    yield
    nsbox("delete", "pod", "--all", "--grace-period", "1", check=False)


# ---------------------------------------------------------------- manifests and steps


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers, **spec}}


def env_from_config_map(name: str, config_map_name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": config_map_name, "key": key}}}


def env_from_secret(name: str, secret_name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}


HOST_ROOT = {"nsbox.io/host-root": "true"}


def apply(nsbox, *docs: dict[str, Any]) -> list[str]:
    """`kubectl apply -f FILE` (or `create -f`): the lines printed on stdout. Pods get HOST_ROOT."""
    for doc in docs:
        if doc.get("kind") == "Pod":
            doc["metadata"]["annotations"] = {**doc["metadata"].get("annotations", {}), **HOST_ROOT}
    return nsbox("apply", "-f", "-", input=yaml.safe_dump_all(docs, sort_keys=False)).stdout.splitlines()


def logs_once_finished(nsbox, name: str) -> str:
    """`kubectl logs NAME` of a pod whose one container runs to completion (restartPolicy Never)."""
    assert terminated(nsbox, name)["exitCode"] == 0, nsbox("logs", name, check=False)
    return nsbox("logs", name).stdout


def logs_once_printed(nsbox, name: str, text: str) -> str:
    """`kubectl logs NAME` of a looping container, once `text` has been printed."""

    def printed() -> str | None:
        out = nsbox("logs", name).stdout
        return out if text in out else None

    return wait_for(printed, what=f"{text!r} in the logs of {name}")


def exec_(nsbox, name: str, *command: str) -> str:
    """`kubectl exec NAME -- COMMAND...`: its stdout."""
    return nsbox("exec", name, "--", *command).stdout


def lines_of_printenv(output: str) -> list[str]:
    """The docs' loops start with `echo -en '\\n'`: busybox prints one empty line, dash's
    echo (which takes no -e) prints "-en " and the newline. What follows is the same."""
    return [line for line in output.splitlines() if line not in ("", "-en ")]


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- Configure a Pod to Use a ConfigMap


def test_configmaps_from_a_directory_files_an_env_file_and_literals(nsbox, tmp_path):
    # tasks/configure-pod-container/configure-pod-configmap, "Create a ConfigMap": the
    # game.properties / ui.properties files (our own contents), from the directory, from
    # files (one with its own key), from env-files, and from literal values.
    conf = tmp_path / "configure-pod-container" / "configmap"
    conf.mkdir(parents=True)
    (conf / "game.properties").write_text("enemies=aliens\nlives=3\n")
    (conf / "ui.properties").write_text("color.good=purple\n")
    (tmp_path / "game-env-file.properties").write_text('enemies=aliens\nlives=3\nallowed="true"\n\n# ignored\n')
    (tmp_path / "ui-env-file.properties").write_text("color=purple\ntextmode=true\n")

    def data(name: str) -> dict[str, str]:
        return yaml.safe_load(nsbox("get", "configmaps", name, "-o", "yaml").stdout)["data"]

    assert (
        nsbox("create", "configmap", "game-config", f"--from-file={conf}/").stdout == "configmap/game-config created\n"
    )
    assert data("game-config") == {
        "game.properties": "enemies=aliens\nlives=3\n",
        "ui.properties": "color.good=purple\n",
    }
    nsbox(
        "create",
        "configmap",
        "game-config-2",
        f"--from-file={conf}/game.properties",
        f"--from-file={conf}/ui.properties",
    )
    assert sorted(data("game-config-2")) == ["game.properties", "ui.properties"]
    nsbox("create", "configmap", "game-config-3", f"--from-file=game-special-key={conf}/game.properties")
    assert data("game-config-3") == {"game-special-key": "enemies=aliens\nlives=3\n"}
    # Quotes stay part of the value; blank lines and comments are skipped.
    nsbox("create", "configmap", "game-config-env-file", f"--from-env-file={tmp_path}/game-env-file.properties")
    assert data("game-config-env-file") == {"allowed": '"true"', "enemies": "aliens", "lives": "3"}
    # Several env-files are merged, as the page says of kubectl 1.23 and later.
    nsbox(
        "create",
        "configmap",
        "config-multi-env-files",
        f"--from-env-file={tmp_path}/game-env-file.properties",
        f"--from-env-file={tmp_path}/ui-env-file.properties",
    )
    assert data("config-multi-env-files") == {
        "allowed": '"true"',
        "color": "purple",
        "enemies": "aliens",
        "lives": "3",
        "textmode": "true",
    }
    nsbox(
        "create", "configmap", "special-config", "--from-literal=special.how=very", "--from-literal=special.type=charm"
    )
    assert data("special-config") == {"special.how": "very", "special.type": "charm"}
    listed = nsbox("get", "configmaps").stdout.splitlines()
    assert listed[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[:2] for line in listed[1:]] == [
        ["config-multi-env-files", "5"],
        ["game-config", "2"],
        ["game-config-2", "2"],
        ["game-config-3", "1"],
        ["game-config-env-file", "3"],
        ["special-config", "2"],
    ]


def test_a_single_configmap_key_as_an_environment_variable(nsbox):
    # configure-pod-configmap, "Define a container environment variable with data from a single
    # ConfigMap": pods/pod-single-configmap-env-variable.yaml.
    nsbox("create", "configmap", "special-config", "--from-literal=special.how=very")
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["/bin/sh", "-c", "env"],
                    "env": [env_from_config_map("SPECIAL_LEVEL_KEY", "special-config", "special.how")],
                }
            ],
            restartPolicy="Never",
        ),
    )
    assert "SPECIAL_LEVEL_KEY=very" in logs_once_finished(nsbox, "dapi-test-pod").splitlines()


def test_environment_variables_from_two_configmaps(nsbox):
    # configure-pod-configmap, "... with data from multiple ConfigMaps": configmap/configmaps.yaml
    # (two ConfigMaps in one file) and pods/pod-multiple-configmap-env-variable.yaml.
    assert apply(
        nsbox, config_map("special-config", {"special.how": "very"}), config_map("env-config", {"log_level": "INFO"})
    ) == ["configmap/special-config created", "configmap/env-config created"]
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["/bin/sh", "-c", "env"],
                    "env": [
                        env_from_config_map("SPECIAL_LEVEL_KEY", "special-config", "special.how"),
                        env_from_config_map("LOG_LEVEL", "env-config", "log_level"),
                    ],
                }
            ],
            restartPolicy="Never",
        ),
    )
    out = logs_once_finished(nsbox, "dapi-test-pod").splitlines()
    assert "SPECIAL_LEVEL_KEY=very" in out and "LOG_LEVEL=INFO" in out


# configmap/configmap-multikeys.yaml
MULTIKEYS = config_map("special-config", {"SPECIAL_LEVEL": "very", "SPECIAL_TYPE": "charm"})


def test_env_from_makes_every_key_a_variable(nsbox):
    # configure-pod-configmap, "Configure all key-value pairs in a ConfigMap as container
    # environment variables": configmap/configmap-multikeys.yaml, pods/pod-configmap-envFrom.yaml.
    apply(nsbox, MULTIKEYS)
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "registry.k8s.io/busybox",
                    "command": ["/bin/sh", "-c", "env"],
                    "envFrom": [{"configMapRef": {"name": "special-config"}}],
                }
            ],
            restartPolicy="Never",
        ),
    )
    out = logs_once_finished(nsbox, "dapi-test-pod").splitlines()
    assert "SPECIAL_LEVEL=very" in out and "SPECIAL_TYPE=charm" in out


def test_configmap_variables_in_the_command(nsbox):
    # configure-pod-configmap, "Use ConfigMap-defined environment variables in Pod commands":
    # pods/pod-configmap-env-var-valueFrom.yaml; `$(VAR)` is expanded before the command runs.
    apply(nsbox, MULTIKEYS)
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["/bin/echo", "$(SPECIAL_LEVEL_KEY) $(SPECIAL_TYPE_KEY)"],
                    "env": [
                        env_from_config_map("SPECIAL_LEVEL_KEY", "special-config", "SPECIAL_LEVEL"),
                        env_from_config_map("SPECIAL_TYPE_KEY", "special-config", "SPECIAL_TYPE"),
                    ],
                }
            ],
            restartPolicy="Never",
        ),
    )
    assert logs_once_finished(nsbox, "dapi-test-pod") == "very charm\n"


def test_a_configmap_volume_has_one_file_per_key(nsbox):
    # configure-pod-configmap, "Populate a Volume with data stored in a ConfigMap":
    # pods/pod-configmap-volume.yaml lists the mount.
    apply(nsbox, MULTIKEYS)
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "registry.k8s.io/busybox",
                    "command": ["/bin/sh", "-c", "ls /etc/config/"],
                    "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}],
                }
            ],
            volumes=[{"name": "config-volume", "configMap": {"name": "special-config"}}],
            restartPolicy="Never",
        ),
    )
    assert logs_once_finished(nsbox, "dapi-test-pod") == "SPECIAL_LEVEL\nSPECIAL_TYPE\n"


def test_a_configmap_key_at_a_path_of_its_own(nsbox):
    # configure-pod-configmap, "Add ConfigMap data to a specific path in the Volume":
    # pods/pod-configmap-volume-specific-key.yaml. The file holds the value as it is, with no
    # newline added, so the log is exactly "very".
    apply(nsbox, MULTIKEYS)
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "registry.k8s.io/busybox",
                    "command": ["/bin/sh", "-c", "cat /etc/config/keys"],
                    "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}],
                }
            ],
            volumes=[
                {
                    "name": "config-volume",
                    "configMap": {"name": "special-config", "items": [{"key": "SPECIAL_LEVEL", "path": "keys"}]},
                }
            ],
            restartPolicy="Never",
        ),
    )
    assert logs_once_finished(nsbox, "dapi-test-pod") == "very"


def test_optional_configmaps_leave_the_variable_unset_and_the_volume_empty(nsbox):
    # configure-pod-configmap, "Optional ConfigMaps": the page's inline pods, a configMapKeyRef
    # to a missing "a-config" and a volume of a missing "no-config", both optional: the output
    # of `env | grep AKEY` and of `ls /etc/config/` is empty.
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "gcr.io/google_containers/busybox",
                    "command": ["/bin/sh", "-c", "env; ls /etc/config/"],
                    "env": [
                        {
                            "name": "AKEY",
                            "valueFrom": {"configMapKeyRef": {"name": "a-config", "key": "akey", "optional": True}},
                        }
                    ],
                    "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}],
                }
            ],
            volumes=[{"name": "config-volume", "configMap": {"name": "no-config", "optional": True}}],
            restartPolicy="Never",
        ),
    )
    out = logs_once_finished(nsbox, "dapi-test-pod")
    assert "AKEY" not in out and "PATH=" in out  # env ran; ls printed nothing


def test_a_missing_configmap_keeps_the_pod_from_starting_until_it_is_created(nsbox):
    # configure-pod-configmap, "Restrictions": a ConfigMap referenced before it exists keeps
    # the pod from starting (pod-single-configmap-env-variable.yaml without its ConfigMap).
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["/bin/sh", "-c", "env"],
                    "env": [env_from_config_map("SPECIAL_LEVEL_KEY", "special-config", "special.how")],
                }
            ],
            restartPolicy="Never",
        ),
    )
    waiting = wait_for(
        lambda: nsbox.container_state("dapi-test-pod")["state"].get("waiting", {}).get("message"),
        what="the container to wait for its ConfigMap",
    )
    assert waiting == 'configmap "special-config" not found'
    assert nsbox.container_state("dapi-test-pod")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    nsbox("create", "configmap", "special-config", "--from-literal=special.how=very")
    assert "SPECIAL_LEVEL_KEY=very" in logs_once_finished(nsbox, "dapi-test-pod").splitlines()


def test_a_mounted_configmap_is_updated_in_place(nsbox):
    # configure-pod-configmap, "Mounted ConfigMaps are updated automatically": the same volume
    # (pod-configmap-volume-specific-key.yaml's) read by a container that stays.
    apply(nsbox, MULTIKEYS)
    apply(
        nsbox,
        pod(
            "dapi-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "registry.k8s.io/busybox",
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}],
                }
            ],
            volumes=[
                {
                    "name": "config-volume",
                    "configMap": {"name": "special-config", "items": [{"key": "SPECIAL_LEVEL", "path": "keys"}]},
                }
            ],
        ),
    )
    pid = nsbox.pid("dapi-test-pod")
    assert read(in_container(pid, "/etc/config/keys")) == "very"
    assert apply(nsbox, config_map("special-config", {"SPECIAL_LEVEL": "extremely", "SPECIAL_TYPE": "charm"})) == [
        "configmap/special-config configured"
    ]
    wait_for(lambda: read(in_container(pid, "/etc/config/keys")) == "extremely", what="the volume to follow")
    assert exec_(nsbox, "dapi-test-pod", "cat", "/etc/config/keys") == "extremely"


# ---------------------------------------------------------------- Distribute Credentials Securely Using Secrets

# pods/inject/secret.yaml: the page's base64 of `echo -n 'my-app'` and `echo -n '39528$vdg7Jb'`.
USERNAME, PASSWORD = "my-app", "39528$vdg7Jb"
TEST_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "test-secret"},
    "data": {
        "username": base64.b64encode(USERNAME.encode()).decode(),
        "password": base64.b64encode(PASSWORD.encode()).decode(),
    },
}
# The docs' pods use the nginx image's own entrypoint; without images, a command that stays.
NGINX_STAND_IN = ["sleep", "3600"]


def test_a_secret_from_a_manifest_and_its_volume(nsbox):
    # tasks/inject-data-application/distribute-credentials-secure, "Create a Pod that has access
    # to the secret data through a Volume": pods/inject/secret.yaml and secret-pod.yaml.
    assert base64.b64encode(USERNAME.encode()).decode() == "bXktYXBw"  # the page's `base64`
    assert apply(nsbox, TEST_SECRET) == ["secret/test-secret created"]
    listed = nsbox("get", "secret", "test-secret").stdout.splitlines()
    assert [line.split()[:3] for line in listed] == [["NAME", "TYPE", "DATA"], ["test-secret", "Opaque", "2"]]
    apply(
        nsbox,
        pod(
            "secret-test-pod",
            [
                {
                    "name": "test-container",
                    "image": "nginx",
                    "command": NGINX_STAND_IN,
                    "volumeMounts": [{"name": "secret-volume", "mountPath": "/etc/secret-volume", "readOnly": True}],
                }
            ],
            volumes=[{"name": "secret-volume", "secret": {"secretName": "test-secret"}}],
        ),
    )
    pid = nsbox.pid("secret-test-pod")
    get = nsbox("get", "pod", "secret-test-pod").stdout.splitlines()
    assert get[1].split()[:3] == ["secret-test-pod", "1/1", "Running"]
    assert exec_(nsbox, "secret-test-pod", "ls", "/etc/secret-volume").split() == ["password", "username"]
    assert exec_(nsbox, "secret-test-pod", "sh", "-c", 'echo "$( cat /etc/secret-volume/username )"') == "my-app\n"
    assert (
        exec_(nsbox, "secret-test-pod", "sh", "-c", 'echo "$( cat /etc/secret-volume/password )"') == "39528$vdg7Jb\n"
    )
    assert mode(in_container(pid, "/etc/secret-volume/password")) == 0o644  # the default mode
    assert "ro" in subprocess.run(
        ["findmnt", "-N", str(pid), "-rno", "OPTIONS", "/etc/secret-volume"], capture_output=True, text=True
    ).stdout.split(",")


def test_a_secret_created_from_literals_as_environment_variables(nsbox):
    # distribute-credentials-secure, "Define container environment variables using Secret data":
    # `kubectl create secret generic backend-user --from-literal=backend-username='backend-admin'`,
    # then pods/inject/pod-single-secret-env-variable.yaml.
    assert (
        nsbox("create", "secret", "generic", "backend-user", "--from-literal=backend-username=backend-admin").stdout
        == "secret/backend-user created\n"
    )
    apply(
        nsbox,
        pod(
            "env-single-secret",
            [
                {
                    "name": "envars-test-container",
                    "image": "nginx",
                    "command": NGINX_STAND_IN,
                    "env": [env_from_secret("SECRET_USERNAME", "backend-user", "backend-username")],
                }
            ],
        ),
    )
    nsbox.pid("env-single-secret")
    assert exec_(nsbox, "env-single-secret", "/bin/sh", "-c", "echo $SECRET_USERNAME") == "backend-admin\n"


def test_variables_from_two_secrets(nsbox):
    # distribute-credentials-secure, "... from multiple Secrets": backend-user and db-user
    # created from literals, pods/inject/pod-multiple-secret-env-variable.yaml.
    nsbox("create", "secret", "generic", "backend-user", "--from-literal=backend-username=backend-admin")
    nsbox("create", "secret", "generic", "db-user", "--from-literal=db-username=db-admin")
    apply(
        nsbox,
        pod(
            "envvars-multiple-secrets",
            [
                {
                    "name": "envars-test-container",
                    "image": "nginx",
                    "command": NGINX_STAND_IN,
                    "env": [
                        env_from_secret("BACKEND_USERNAME", "backend-user", "backend-username"),
                        env_from_secret("DB_USERNAME", "db-user", "db-username"),
                    ],
                }
            ],
        ),
    )
    nsbox.pid("envvars-multiple-secrets")
    out = exec_(nsbox, "envvars-multiple-secrets", "/bin/sh", "-c", "env | grep _USERNAME")
    assert sorted(out.splitlines()) == ["BACKEND_USERNAME=backend-admin", "DB_USERNAME=db-admin"]


def test_env_from_a_secret(nsbox):
    # distribute-credentials-secure, "Configure all key-value pairs in a Secret as container
    # environment variables": test-secret from literals, pods/inject/pod-secret-envFrom.yaml.
    nsbox(
        "create",
        "secret",
        "generic",
        "test-secret",
        f"--from-literal=username={USERNAME}",
        f"--from-literal=password={PASSWORD}",
    )
    # The same Secret as pods/inject/secret.yaml's, as the page says.
    assert yaml.safe_load(nsbox("get", "secret", "test-secret", "-o", "yaml").stdout)["data"] == TEST_SECRET["data"]
    apply(
        nsbox,
        pod(
            "envfrom-secret",
            [
                {
                    "name": "envars-test-container",
                    "image": "nginx",
                    "command": NGINX_STAND_IN,
                    "envFrom": [{"secretRef": {"name": "test-secret"}}],
                }
            ],
        ),
    )
    nsbox.pid("envfrom-secret")
    out = exec_(nsbox, "envfrom-secret", "/bin/sh", "-c", 'echo "username: $username\\npassword: $password\\n"')
    assert out.splitlines()[:2] == ["username: my-app", "password: 39528$vdg7Jb"]


def test_secret_keys_at_chosen_paths_with_a_default_mode(nsbox):
    # distribute-credentials-secure, "Project Secret keys to specific file paths" and "Set POSIX
    # permissions for Secret keys" (the page's inline pods, combined): username only, at
    # my-group/my-username, and defaultMode 0400.
    apply(nsbox, TEST_SECRET)
    apply(
        nsbox,
        pod(
            "mypod",
            [
                {
                    "name": "mypod",
                    "image": "redis",
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "foo", "mountPath": "/etc/foo", "readOnly": True}],
                }
            ],
            volumes=[
                {
                    "name": "foo",
                    "secret": {
                        "secretName": "test-secret",
                        "defaultMode": 0o400,
                        "items": [{"key": "username", "path": "my-group/my-username"}],
                    },
                }
            ],
        ),
    )
    pid = nsbox.pid("mypod")
    assert read(in_container(pid, "/etc/foo/my-group/my-username")) == USERNAME
    assert not os.path.exists(in_container(pid, "/etc/foo/password"))  # only the listed key
    assert mode(in_container(pid, "/etc/foo/my-group/my-username")) == 0o400
    # `ls -l` shows the names as links into ..data, as on a node.
    assert os.readlink(in_container(pid, "/etc/foo/my-group")) == "..data/my-group"


# ---------------------------------------------------------------- Expose Pod Information ... Through Files


def test_downward_api_volume_of_labels_and_annotations(nsbox):
    # tasks/inject-data-application/downward-api-volume-expose-pod-information:
    # pods/inject/dapi-volume.yaml. Its loop tests files with `[[ -e ... ]]`, which dash (this
    # host's sh) does not have, so the loop prints only dash's complaint; the files are read
    # as the page does next, with `kubectl exec ... cat`, and from the host.
    apply(
        nsbox,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "kubernetes-downwardapi-volume-example",
                "labels": {"zone": "us-est-coast", "cluster": "test-cluster1", "rack": "rack-22"},
                "annotations": {"build": "two", "builder": "john-doe"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "client-container",
                        "image": BUSYBOX,
                        "command": ["sh", "-c"],
                        "args": [
                            "while true; do if [[ -e /etc/podinfo/labels ]]; then echo -en '\\n\\n'; "
                            "cat /etc/podinfo/labels; fi; if [[ -e /etc/podinfo/annotations ]]; then "
                            "echo -en '\\n\\n'; cat /etc/podinfo/annotations; fi; sleep 5; done;"
                        ],
                        "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "podinfo",
                        "downwardAPI": {
                            "items": [
                                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                            ]
                        },
                    }
                ],
            },
        },
    )
    name = "kubernetes-downwardapi-volume-example"
    pid = nsbox.pid(name)
    labels = 'cluster="test-cluster1"\nrack="rack-22"\nzone="us-est-coast"'
    annotations = 'build="two"\nbuilder="john-doe"\nnsbox.io/host-root="true"'  # the docs' two, and HOST_ROOT
    assert exec_(nsbox, name, "cat", "/etc/podinfo/labels") == labels
    assert exec_(nsbox, name, "cat", "/etc/podinfo/annotations") == annotations
    assert "[[: not found" in logs_once_printed(nsbox, name, "[[")
    # `ls -laR /etc/podinfo`: labels and annotations are links through ..data, which links to
    # a timestamped directory holding the files.
    root = in_container(pid, "/etc/podinfo")
    data_dir = os.readlink(f"{root}/..data")
    assert re.fullmatch(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+", data_dir), data_dir
    assert sorted(os.listdir(root)) == sorted([data_dir, "..data", "annotations", "labels"])
    assert os.readlink(f"{root}/labels") == "..data/labels"
    assert sorted(os.listdir(f"{root}/{data_dir}")) == ["annotations", "labels"]
    assert read(f"{root}/{data_dir}/labels") == labels


def test_downward_api_volume_of_container_resources(nsbox):
    # downward-api-volume-expose-pod-information, "Store container fields":
    # pods/inject/dapi-volume-resources.yaml; divisors 1m and 1Mi.
    def item(path: str, resource: str, divisor: str) -> dict[str, Any]:
        return {
            "path": path,
            "resourceFieldRef": {"containerName": "client-container", "resource": resource, "divisor": divisor},
        }

    name = "kubernetes-downwardapi-volume-example-2"
    apply(
        nsbox,
        pod(
            name,
            [
                {
                    "name": "client-container",
                    "image": BUSYBOX,
                    "command": ["sh", "-c"],
                    "args": [
                        "while true; do echo -en '\\n'; if [[ -e /etc/podinfo/cpu_limit ]]; then echo -en '\\n'; "
                        "cat /etc/podinfo/cpu_limit; fi; if [[ -e /etc/podinfo/cpu_request ]]; then echo -en '\\n'; "
                        "cat /etc/podinfo/cpu_request; fi; if [[ -e /etc/podinfo/mem_limit ]]; then echo -en '\\n'; "
                        "cat /etc/podinfo/mem_limit; fi; if [[ -e /etc/podinfo/mem_request ]]; then echo -en '\\n'; "
                        "cat /etc/podinfo/mem_request; fi; sleep 5; done;"
                    ],
                    "resources": {
                        "requests": {"memory": "32Mi", "cpu": "125m"},
                        "limits": {"memory": "64Mi", "cpu": "250m"},
                    },
                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                }
            ],
            volumes=[
                {
                    "name": "podinfo",
                    "downwardAPI": {
                        "items": [
                            item("cpu_limit", "limits.cpu", "1m"),
                            item("cpu_request", "requests.cpu", "1m"),
                            item("mem_limit", "limits.memory", "1Mi"),
                            item("mem_request", "requests.memory", "1Mi"),
                        ]
                    },
                }
            ],
        ),
    )
    nsbox.pid(name)
    values = {
        f: exec_(nsbox, name, "cat", f"/etc/podinfo/{f}")
        for f in ("cpu_limit", "cpu_request", "mem_limit", "mem_request")
    }
    assert values == {"cpu_limit": "250", "cpu_request": "125", "mem_limit": "64", "mem_request": "32"}


# ---------------------------------------------------------------- ... Through Environment Variables


def test_pod_fields_as_environment_variables(nsbox):
    # tasks/inject-data-application/environment-variable-expose-pod-information, "Use Pod fields
    # as values for environment variables": pods/inject/dapi-envars-pod.yaml.
    def field(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    apply(
        nsbox,
        pod(
            "dapi-envars-fieldref",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["sh", "-c"],
                    "args": [
                        "while true; do echo -en '\\n'; printenv MY_NODE_NAME MY_POD_NAME MY_POD_NAMESPACE; "
                        "printenv MY_POD_IP MY_POD_SERVICE_ACCOUNT; sleep 10; done;"
                    ],
                    "env": [
                        field("MY_NODE_NAME", "spec.nodeName"),
                        field("MY_POD_NAME", "metadata.name"),
                        field("MY_POD_NAMESPACE", "metadata.namespace"),
                        field("MY_POD_IP", "status.podIP"),
                        field("MY_POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
                    ],
                }
            ],
            restartPolicy="Never",
        ),
    )
    pod_ip = nsbox.pod("dapi-envars-fieldref")["status"].get("podIP", "")
    out = logs_once_printed(nsbox, "dapi-envars-fieldref", "dapi-envars-fieldref\ndefault\n")
    # The node is this machine; a pod on the default (loopback) network has no IP: an empty line.
    # The service account is "default", as the ServiceAccount admission plugin sets it.
    expected = [os.uname().nodename, "dapi-envars-fieldref", "default"] + ([pod_ip] if pod_ip else []) + ["default"]
    assert lines_of_printenv(out)[: len(expected)] == expected
    env = dict(
        line.split("=", 1)
        for line in exec_(nsbox, "dapi-envars-fieldref", "printenv").splitlines()
        if line.startswith("MY_")
    )
    assert env == {
        "MY_NODE_NAME": os.uname().nodename,
        "MY_POD_NAME": "dapi-envars-fieldref",
        "MY_POD_NAMESPACE": "default",
        "MY_POD_IP": pod_ip,
        "MY_POD_SERVICE_ACCOUNT": "default",
    }


def test_container_resources_as_environment_variables(nsbox):
    # environment-variable-expose-pod-information, "Use container fields as values for environment
    # variables": pods/inject/dapi-envars-container.yaml. No divisor: CPU in whole cores rounded
    # up (125m and 250m are 1), memory in bytes.
    def resource(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"resourceFieldRef": {"containerName": "test-container", "resource": path}}}

    apply(
        nsbox,
        pod(
            "dapi-envars-resourcefieldref",
            [
                {
                    "name": "test-container",
                    "image": BUSYBOX,
                    "command": ["sh", "-c"],
                    "args": [
                        "while true; do echo -en '\\n'; printenv MY_CPU_REQUEST MY_CPU_LIMIT; "
                        "printenv MY_MEM_REQUEST MY_MEM_LIMIT; sleep 10; done;"
                    ],
                    "resources": {
                        "requests": {"memory": "32Mi", "cpu": "125m"},
                        "limits": {"memory": "64Mi", "cpu": "250m"},
                    },
                    "env": [
                        resource("MY_CPU_REQUEST", "requests.cpu"),
                        resource("MY_CPU_LIMIT", "limits.cpu"),
                        resource("MY_MEM_REQUEST", "requests.memory"),
                        resource("MY_MEM_LIMIT", "limits.memory"),
                    ],
                }
            ],
            restartPolicy="Never",
        ),
    )
    out = logs_once_printed(nsbox, "dapi-envars-resourcefieldref", "67108864")
    assert lines_of_printenv(out)[:4] == ["1", "1", "33554432", "67108864"]


# ---------------------------------------------------------------- Configure a Pod to Use a Projected Volume for Storage


def test_a_projected_volume_of_two_secrets(nsbox, tmp_path):
    # tasks/configure-pod-container/configure-projected-volume-storage: the secrets "user" and
    # "pass" from files written with `echo -n`, then pods/storage/projected.yaml. The example
    # gives busybox `args` only (its image has no entrypoint); here they are the command.
    (tmp_path / "username.txt").write_text("admin")
    (tmp_path / "password.txt").write_text("1f2d1e2e67df")
    nsbox("create", "secret", "generic", "user", f"--from-file={tmp_path}/username.txt")
    nsbox("create", "secret", "generic", "pass", f"--from-file={tmp_path}/password.txt")
    apply(
        nsbox,
        pod(
            "test-projected-volume",
            [
                {
                    "command": ["sleep", "86400"],
                    "image": "busybox:1.28",
                    "name": "test-projected-volume",
                    "volumeMounts": [{"mountPath": "/projected-volume", "name": "all-in-one", "readOnly": True}],
                }
            ],
            volumes=[
                {
                    "name": "all-in-one",
                    "projected": {"sources": [{"secret": {"name": "user"}}, {"secret": {"name": "pass"}}]},
                }
            ],
        ),
    )
    wait_for(
        lambda: nsbox("get", "pod", "test-projected-volume").stdout.splitlines()[1].split()[2] == "Running",
        what="the pod to be Running",
    )
    assert exec_(nsbox, "test-projected-volume", "ls", "/projected-volume/").split() == ["password.txt", "username.txt"]
    assert exec_(nsbox, "test-projected-volume", "cat", "/projected-volume/username.txt") == "admin"


def test_a_projected_volume_of_a_secret_the_downward_api_and_a_configmap(nsbox):
    # concepts/storage/projected-volumes: pods/storage/projected-secret-downwardapi-configmap.yaml,
    # with the "mysecret" and "myconfigmap" it names.
    nsbox("create", "secret", "generic", "mysecret", "--from-literal=username=admin")
    nsbox("create", "configmap", "myconfigmap", "--from-literal=config=value-1")
    apply(
        nsbox,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "volume-test", "labels": {"app": "demo"}},
            "spec": {
                "containers": [
                    {
                        "command": ["sleep", "3600"],
                        "image": "busybox:1.28",
                        "name": "container-test",
                        "volumeMounts": [{"mountPath": "/projected-volume", "name": "all-in-one", "readOnly": True}],
                    }
                ],
                "volumes": [
                    {
                        "name": "all-in-one",
                        "projected": {
                            "sources": [
                                {
                                    "secret": {
                                        "items": [{"key": "username", "path": "my-group/my-username"}],
                                        "name": "mysecret",
                                    }
                                },
                                {
                                    "downwardAPI": {
                                        "items": [
                                            {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
                                            {
                                                "path": "cpu_limit",
                                                "resourceFieldRef": {
                                                    "containerName": "container-test",
                                                    "resource": "limits.cpu",
                                                },
                                            },
                                        ]
                                    }
                                },
                                {
                                    "configMap": {
                                        "items": [{"key": "config", "path": "my-group/my-config"}],
                                        "name": "myconfigmap",
                                    }
                                },
                            ]
                        },
                    }
                ],
            },
        },
    )
    pid = nsbox.pid("volume-test")
    root = in_container(pid, "/projected-volume")
    assert read(f"{root}/my-group/my-username") == "admin"
    assert read(f"{root}/my-group/my-config") == "value-1"
    assert read(f"{root}/labels") == 'app="demo"'
    # No limit: the node's allocatable CPU, in whole cores.
    assert read(f"{root}/cpu_limit") == str(os.cpu_count())
    assert sorted(n for n in os.listdir(root) if not n.startswith("..")) == ["cpu_limit", "labels", "my-group"]


def test_a_projected_volume_with_a_non_default_mode(nsbox):
    # concepts/storage/projected-volumes: pods/storage/projected-secrets-nondefault-permission-mode.yaml;
    # mode 511 (0777) for the password, the default 0644 for the username.
    nsbox("create", "secret", "generic", "mysecret", "--from-literal=username=admin")
    nsbox("create", "secret", "generic", "mysecret2", "--from-literal=password=1f2d1e2e67df")
    apply(
        nsbox,
        pod(
            "volume-test",
            [
                {
                    "command": ["sleep", "3600"],
                    "image": "busybox:1.28",
                    "name": "container-test",
                    "volumeMounts": [{"mountPath": "/projected-volume", "name": "all-in-one", "readOnly": True}],
                }
            ],
            volumes=[
                {
                    "name": "all-in-one",
                    "projected": {
                        "sources": [
                            {
                                "secret": {
                                    "items": [{"key": "username", "path": "my-group/my-username"}],
                                    "name": "mysecret",
                                }
                            },
                            {
                                "secret": {
                                    "items": [{"key": "password", "mode": 511, "path": "my-group/my-password"}],
                                    "name": "mysecret2",
                                }
                            },
                        ]
                    },
                }
            ],
        ),
    )
    nsbox.pid("volume-test")
    listing = exec_(nsbox, "volume-test", "ls", "-l", "/projected-volume/my-group/").splitlines()
    modes = {line.split()[-1]: line.split()[0] for line in listing[1:]}
    assert modes == {"my-password": "-rwxrwxrwx", "my-username": "-rw-r--r--"}


# ---------------------------------------------------------------- Configure a Security Context (fsGroup, groups)


def groups_of(pid: int) -> tuple[str, set[int]]:
    status = proc_status(pid)
    return status["Gid"].split()[0], {int(g) for g in status["Groups"].split()}


def merged_groups(uid: int) -> set[int]:
    """The groups that list the user `uid` has in /etc/passwd as a member in /etc/group
    (what supplementalGroupsPolicy Merge adds; the host's files, as nsbox uses no image)."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        return set()
    return {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def test_fs_group_owns_the_volume_and_new_files(nsbox):
    # tasks/configure-pod-container/security-context, "Set the security context for a Pod":
    # pods/security/security-context.yaml (runAsUser 1000, runAsGroup 3000, fsGroup 2000,
    # supplementalGroups [4000], an emptyDir at /data/demo).
    apply(
        nsbox,
        pod(
            "security-context-demo",
            [
                {
                    "name": "sec-ctx-demo",
                    "image": "busybox:1.28",
                    "command": ["sh", "-c", "sleep 1h"],
                    "volumeMounts": [{"name": "sec-ctx-vol", "mountPath": "/data/demo"}],
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
            securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
            volumes=[{"name": "sec-ctx-vol", "emptyDir": {}}],
        ),
    )
    pid = nsbox.pid("security-context-demo")
    # `ps`: the processes run as user 1000.
    assert proc_status(pid)["Uid"].split()[0] == "1000"
    # `ls -l /data`: demo is drwxrwsrwx, owned by root and group 2000.
    st = os.stat(in_container(pid, "/data/demo"))
    assert (stat.filemode(st.st_mode), st.st_uid, st.st_gid) == ("drwxrwsrwx", 0, 2000)
    # `echo hello > testfile` in it: the file is the user's, in group 2000 (the setgid bit).
    nsbox("exec", "security-context-demo", "--", "sh", "-c", "cd /data/demo && echo hello > testfile")
    st = os.stat(in_container(pid, "/data/demo/testfile"))
    assert (stat.filemode(st.st_mode), st.st_uid, st.st_gid) == ("-rw-r--r--", 1000, 2000)
    # `id`: uid=1000 gid=3000 groups=2000,3000,4000 (busybox sorts them; coreutils' id lists
    # the primary group first and names what this host's /etc/passwd and /etc/group name).
    out = exec_(nsbox, "security-context-demo", "id")
    found = re.fullmatch(r"uid=1000(\(\S+\))? gid=3000(\(\S+\))? groups=(\S+)\n", out)
    assert found, out
    expected = {2000, 3000, 4000} | merged_groups(1000)
    assert {int(g.split("(")[0]) for g in found.group(3).split(",")} == expected
    assert groups_of(pid) == ("3000", expected)


def test_supplemental_groups_policy_merge_and_strict(nsbox):
    # security-context, "Configure fine-grained SupplementalGroups control for a Pod":
    # pods/security/security-context-5.yaml (Merge, the default: the groups of the image's
    # /etc/group that list the user are added; here, the host's) and security-context-6.yaml
    # (Strict: exactly runAsGroup and supplementalGroups), each seen in `id` and in the
    # status's `user.linux`.
    def demo(policy: str | None) -> dict[str, Any]:
        context: dict[str, Any] = {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]}
        if policy:
            context["supplementalGroupsPolicy"] = policy
        return pod(
            "security-context-demo",
            [
                {
                    "name": "sec-ctx-demo",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.45",
                    "command": ["sh", "-c", "sleep 1h"],
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
            securityContext=context,
        )

    for policy, expected in ((None, {3000, 4000} | merged_groups(1000)), ("Strict", {3000, 4000})):
        apply(nsbox, demo(policy))
        pid = nsbox.pid("security-context-demo")
        out = exec_(nsbox, "security-context-demo", "id")
        groups = re.search(r"groups=(\S+)", out).group(1)
        assert {int(g.split("(")[0]) for g in groups.split(",")} == expected, (policy, out)
        assert groups_of(pid) == ("3000", expected)
        user = nsbox.container_state("security-context-demo")["user"]["linux"]
        assert (user["uid"], user["gid"], set(user["supplementalGroups"])) == (1000, 3000, expected)
        nsbox("delete", "pod", "security-context-demo", "--grace-period", "1")


# ---------------------------------------------------------------- Using sysctls in a Kubernetes Cluster


def test_namespaced_sysctls_are_set_in_the_pod_only(nsbox):
    # tasks/administer-cluster/sysctl-cluster, "Setting Sysctls for a Pod": the page's inline pod
    # "sysctl-example" (one safe and two unsafe namespaced sysctls; nsbox has no allow-list).
    # Its containers are left out on the page; one that sleeps stands in.
    host_before = {k: read(f"/proc/sys/{k}") for k in ("kernel/shm_rmid_forced", "net/core/somaxconn", "kernel/msgmax")}
    apply(
        nsbox,
        pod(
            "sysctl-example",
            [{"name": "sysctl-example", "image": "busybox", "command": ["sleep", "3600"]}],
            securityContext={
                "sysctls": [
                    {"name": "kernel.shm_rmid_forced", "value": "0"},
                    {"name": "net.core.somaxconn", "value": "1024"},
                    {"name": "kernel.msgmax", "value": "65536"},
                ]
            },
        ),
    )
    pid = nsbox.pid("sysctl-example")

    def in_pod(ns: str, key: str) -> str:
        return subprocess.run(
            ["nsenter", "-t", str(pid), f"--{ns}", "cat", f"/proc/sys/{key}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert in_pod("ipc", "kernel/shm_rmid_forced") == "0"
    assert in_pod("net", "net/core/somaxconn") == "1024"
    assert in_pod("ipc", "kernel/msgmax") == "65536"
    assert exec_(nsbox, "sysctl-example", "cat", "/proc/sys/net/core/somaxconn") == "1024\n"
    assert {k: read(f"/proc/sys/{k}") for k in host_before} == host_before  # the node is untouched


def test_a_sysctl_may_be_named_with_slashes(nsbox):
    # sysctl-cluster: "kernel/shm_rmid_forced" is the same sysctl as kernel.shm_rmid_forced.
    apply(
        nsbox,
        pod(
            "sysctl-example",
            [{"name": "sysctl-example", "image": "busybox", "command": ["sleep", "3600"]}],
            securityContext={"sysctls": [{"name": "kernel/shm_rmid_forced", "value": "1"}]},
        ),
    )
    pid = nsbox.pid("sysctl-example")
    assert (
        subprocess.run(
            ["nsenter", "-t", str(pid), "--ipc", "cat", "/proc/sys/kernel/shm_rmid_forced"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        == "1\n"
    )


# ---------------------------------------------------------------- Adding entries to Pod /etc/hosts with HostAliases


def kubelet_hosts_file(ip: str, hostname: str) -> list[str]:
    return [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{ip}\t{hostname}",
    ]


def test_the_default_hosts_file(nsbox):
    # tasks/network/customize-hosts-file-for-pods, "Default hosts file content": `kubectl run
    # nginx --image nginx`, then `kubectl exec nginx -- cat /etc/hosts`. Without a pod IP (the
    # default loopback network) the pod's name maps to 127.0.1.1.
    nsbox("run", "nginx", "--", "sleep", "3600")
    nsbox.pid("nginx")
    ip = nsbox.pod("nginx")["status"].get("podIP") or "127.0.1.1"
    assert exec_(nsbox, "nginx", "cat", "/etc/hosts").splitlines() == kubelet_hosts_file(ip, "nginx")


def test_host_aliases_are_added_to_etc_hosts(nsbox):
    # customize-hosts-file-for-pods, "Adding additional entries with hostAliases":
    # service/networking/hostaliases-pod.yaml; `kubectl logs hostaliases-pod` shows the file.
    apply(
        nsbox,
        pod(
            "hostaliases-pod",
            [{"name": "cat-hosts", "image": "busybox:1.28", "command": ["cat"], "args": ["/etc/hosts"]}],
            restartPolicy="Never",
            hostAliases=[
                {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                {"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]},
            ],
        ),
    )
    out = logs_once_finished(nsbox, "hostaliases-pod")
    ip = nsbox.pod("hostaliases-pod")["status"].get("podIP") or "127.0.1.1"
    assert out.splitlines() == kubelet_hosts_file(ip, "hostaliases-pod") + [
        "",
        "# Entries added by HostAliases.",
        "127.0.0.1\tfoo.local\tbar.local",
        "10.1.2.3\tfoo.remote\tbar.remote",
    ]
