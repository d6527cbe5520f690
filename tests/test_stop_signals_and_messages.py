"""lifecycle.stopSignal and termination messages (docs/lifecycle.md, "Stop signal" and
"Termination messages"), end to end through the CLI; what a container did is checked from
files it writes to a host directory and from its pod's status."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import imagekit
import pytest
import yaml
from conftest import alive, pod, wait_for

from nsbox import manifest
from nsbox.errors import NsboxError

# PID 1 of a PID namespace ignores signals it has no handler for: these handle them.
QUIT_ENDS_IT = "trap 'echo quit > /out/got; exit 0' QUIT; trap '' TERM; while :; do sleep 0.05; done"


def apply(n, *docs: dict) -> None:
    n("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def terminated(n, name: str, container: str) -> dict:
    def state() -> dict | None:
        for cs in json.loads(n("get", "pod", name, "-o", "json").stdout)["status"]["containerStatuses"]:
            if cs["name"] == container:
                return cs["state"].get("terminated")
        raise AssertionError(f"no status for {container}")

    return wait_for(state, timeout=20, what=f"container {container} to end")


def problems(spec: dict) -> list[str]:
    try:
        manifest.pods_from_documents([("test", pod("p", **spec))])
    except NsboxError as e:
        return str(e).split("\n")
    return []


# --------------------------------------------------------------- stop signal


def test_the_containers_stop_signal_replaces_sigterm(nsbox, tmp_path):
    out = str(tmp_path)
    c = {
        "name": "app",
        "command": ["sh", "-c", QUIT_ENDS_IT],
        "lifecycle": {"stopSignal": "SIGQUIT"},
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    }
    volumes = [{"name": "out", "hostPath": {"path": out}}]
    apply(nsbox, pod("quits", c, os={"name": "linux"}, volumes=volumes, terminationGracePeriodSeconds=60))
    pid = nsbox.pid("quits", "app")
    assert yaml.safe_load(nsbox("get", "pod", "quits", "-o", "yaml").stdout)["spec"]["containers"][0]["lifecycle"] == {
        "stopSignal": "SIGQUIT"
    }
    assert (
        json.loads(nsbox("get", "pod", "quits", "-o", "json").stdout)["status"]["containerStatuses"][0]["stopSignal"]
        == "SIGQUIT"
    )
    began = time.monotonic()
    nsbox("delete", "pod", "quits")  # SIGTERM is ignored: only SIGQUIT ends it before the 60 s grace
    assert time.monotonic() - began < 20
    assert open(f"{out}/got").read() == "quit\n"
    assert not alive(pid)


def test_the_stop_signal_is_read_as_the_api_server_validates_it():
    c = {"name": "app", "command": ["true"]}
    assert problems({"containers": [{**c, "lifecycle": {"stopSignal": "SIGQUIT"}}]}) == [
        "spec.containers[0].lifecycle.stopSignal: Forbidden: may not be set for containers with empty `spec.os.name`"
    ]
    found = problems({"os": {"name": "linux"}, "containers": [{**c, "lifecycle": {"stopSignal": "QUIT"}}]})
    assert found[0].startswith('spec.containers[0].lifecycle.stopSignal: Unsupported value: "QUIT": supported values: ')
    assert '"SIGRTMIN+1"' in found[0] and '"SIGRTMAX-1"' in found[0]
    (p,), _ = manifest.pods_from_documents(
        [("test", pod("p", {**c, "lifecycle": {"stopSignal": "SIGRTMIN+3"}}, os={"name": "linux"}))]
    )
    assert p.containers[0].stop_signal == "SIGRTMIN+3"


@pytest.mark.usefixtures("busybox_image")
def test_the_containers_stop_signal_wins_over_the_images(nsbox_images, registry, tmp_path):
    layout = tempfile.mkdtemp(prefix="imagekit-stopsignal-")
    try:
        image = imagekit.push_image(
            registry,
            layout,
            imagekit.busybox_image_layers(),
            name="stops-on-usr1",
            tag="2",
            config={"Entrypoint": ["sh", "-c", "sleep 1000"], "StopSignal": "SIGUSR1"},
        )
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    out = str(tmp_path)
    c = {
        "name": "app",
        "image": image.ref,
        # USR1 (the image's) and TERM are ignored: only the spec's QUIT ends it
        "command": ["sh", "-c", "trap '' USR1; " + QUIT_ENDS_IT],
        "lifecycle": {"stopSignal": "SIGQUIT"},
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    }
    volumes = [{"name": "out", "hostPath": {"path": out}}]
    n = nsbox_images
    apply(n, pod("spec-wins", c, os={"name": "linux"}, volumes=volumes, terminationGracePeriodSeconds=60))
    n.pid("spec-wins", "app")
    assert (
        json.loads(n("get", "pod", "spec-wins", "-o", "json").stdout)["status"]["containerStatuses"][0]["stopSignal"]
        == "SIGQUIT"
    )
    began = time.monotonic()
    n("delete", "pod", "spec-wins")
    assert time.monotonic() - began < 20
    assert open(f"{out}/got").read() == "quit\n"


# --------------------------------------------------------------- termination messages


def test_the_termination_message_is_what_the_container_wrote_to_its_file(nsbox):
    containers = [
        {"name": "default", "command": ["sh", "-c", "printf 'disk full' > /dev/termination-log; exit 2"]},
        {"name": "custom", "terminationMessagePath": "/var/why", "command": ["sh", "-c", "echo done > /var/why"]},
        {  # the file can be written by any user (0666, as the kubelet makes it)
            "name": "nonroot",
            "securityContext": {"runAsUser": 65534},
            "command": ["sh", "-c", "printf 'from 65534' > /dev/termination-log"],
        },
        {"name": "long", "command": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x > /dev/termination-log"]},
        {"name": "silent", "command": ["sh", "-c", "echo to the log; exit 1"]},
    ]
    apply(nsbox, pod("messages", *containers, restartPolicy="Never"))
    default = terminated(nsbox, "messages", "default")
    assert (default["exitCode"], default["message"]) == (2, "disk full")
    assert terminated(nsbox, "messages", "custom")["message"] == "done\n"
    assert terminated(nsbox, "messages", "nonroot")["message"] == "from 65534"
    assert terminated(nsbox, "messages", "long")["message"] == "x" * 4096  # the file's first 4 KiB
    assert "message" not in terminated(nsbox, "messages", "silent")  # File: the log is not used


def test_fallback_to_logs_on_error_takes_the_end_of_a_failed_containers_log(nsbox):
    def container(name: str, script: str) -> dict:
        return {"name": name, "terminationMessagePolicy": "FallbackToLogsOnError", "command": ["sh", "-c", script]}

    lines = "i=1; while [ $$i -le 100 ]; do echo line $$i; i=$$((i + 1)); done"
    containers = [
        container("failed", f"{lines}; exit 1"),
        container("succeeded", f"{lines}; exit 0"),
        container("wrote", f"{lines}; printf mine > /dev/termination-log; exit 1"),
        container(
            "long-lines",
            "i=0; while [ $$i -lt 10 ]; do head -c 500 /dev/zero | tr '\\0' y; echo; i=$$((i + 1)); done; exit 3",
        ),
    ]
    apply(nsbox, pod("fallback", *containers, restartPolicy="Never"))
    message = terminated(nsbox, "fallback", "failed")["message"]
    assert message.splitlines() == [f"line {i}" for i in range(21, 101)]  # the last 80 lines
    assert "message" not in terminated(nsbox, "fallback", "succeeded")
    assert terminated(nsbox, "fallback", "wrote")["message"] == "mine"
    long = terminated(nsbox, "fallback", "long-lines")["message"]
    assert len(long) == 2048 and long.endswith("y\n")  # the last 2 KiB of them


@pytest.mark.usefixtures("busybox_image")
def test_an_image_containers_termination_message(nsbox_images, busybox_image):
    c = {"name": "app", "image": busybox_image.ref, "command": ["sh", "-c", "printf bye > /dev/termination-log"]}
    apply(nsbox_images, pod("image-message", c, restartPolicy="Never"))
    assert terminated(nsbox_images, "image-message", "app")["message"] == "bye"


def test_termination_message_fields_are_read_as_the_api_server_validates_them():
    c = {"name": "app", "command": ["true"]}
    assert problems({"containers": [{**c, "terminationMessagePolicy": "Always"}]}) == [
        'spec.containers[0].terminationMessagePolicy: Unsupported value: "Always": '
        'supported values: "File", "FallbackToLogsOnError"'
    ]
    (p,), warnings = manifest.pods_from_documents([("test", pod("p", c))])
    assert (p.containers[0].termination_message_path, p.containers[0].termination_message_policy) == (
        "/dev/termination-log",
        "File",
    )
    assert warnings == []
    assert os.path.isabs(p.containers[0].termination_message_path)
