"""The watcher's saved state (nsbox/watcher/podstate.py) goes out and comes back whole
(no kernel needed): across hibernation, and from status.json to an adopting watcher."""

from __future__ import annotations

import json

from nsbox.record import as_dict
from nsbox.watcher.podstate import ContainerState, PodState


def a_pod_state() -> PodState:
    """Every field away from its default."""
    return PodState(
        phase="Failed",
        reason="DeadlineExceeded",
        message="too long",
        start_time="2026-12-05T17:00:00Z",
        pod_ip="10.88.0.7",
        pause_pid=4242,
        pause_start=987654,
        events=[
            {
                "time": "2026-12-05T17:00:01Z",
                "type": "Normal",
                "reason": "Started",
                "message": "Started container web",
                "object": "web",
            }
        ],
        exit_codes={"job": 3},
        etc_files={"hosts": "/run/x/hosts"},
        mount_errors={"cfg": 'configmap "cfg" not found'},
        pid_ns_fd=7,
        host_netns_fd=8,
        userns_first=196608,
    )


def a_container_state() -> ContainerState:
    return ContainerState(
        pid=4300,
        proc_start=123456,
        child=True,
        pidfd=9,
        restart_count=2,
        backoff_index=1,
        started_mono=12345.5,
        state={"running": {"startedAt": "2026-12-05T17:00:02Z"}},
        last_state={"terminated": {"exitCode": 1, "reason": "Error"}},
        log_fd=10,
        oom_before=1,
        image_id="127.0.0.1:5000/app@sha256:" + "a" * 64,
        started_as={"image": "127.0.0.1:5000/app:1", "user": {"uid": 1000, "gid": 1000}, "cwd": "/app"},
    )


def test_every_field_is_set_away_from_its_default_in_these_tests():
    for made, default in ((a_pod_state(), PodState(start_time="")), (a_container_state(), ContainerState())):
        assert all(v != as_dict(default)[k] for k, v in as_dict(made).items())


def test_the_pod_state_survives_hibernation_through_json():
    state = a_pod_state()
    assert PodState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_a_container_state_survives_hibernation_through_json():
    state, back = a_container_state(), ContainerState()
    back.load(json.loads(json.dumps(state.to_dict())))
    assert back == state


def test_the_handoff_keeps_the_keys_of_earlier_versions():
    # A watcher that hibernated before an upgrade is woken by the new code.
    assert set(a_pod_state().to_dict()) == {
        "phase",
        "reason",
        "message",
        "startTime",
        "podIP",
        "pause",
        "events",
        "exitCodes",
        "etcFiles",
        "mountErrors",
        "pidNsFd",
        "hostNetnsFd",
        "usernsFirst",  # added with hostUsers: false; read with a default, as mountErrors
    }
    old = a_pod_state().to_dict()
    del old["usernsFirst"]
    assert PodState.from_dict(old).userns_first == 0
    assert set(a_container_state().to_dict()) == {
        "pid",
        "procStart",
        "child",
        "pidfd",
        "restartCount",
        "backoffIndex",
        "startedMono",
        "state",
        "lastState",
        "logFd",
        "oomBefore",
        "imageID",
        "startedAs",
    }
    old = a_pod_state().to_dict()
    del old["mountErrors"]  # added later than the rest
    assert PodState.from_dict(old).mount_errors == {}
    old_container = a_container_state().to_dict()
    del old_container["imageID"], old_container["startedAs"]  # added with images
    back = ContainerState()
    back.load(old_container)
    assert (back.image_id, back.started_as) == ("", {})


def test_an_adopting_watcher_takes_over_what_status_json_holds():
    state = a_pod_state()
    status = json.loads(json.dumps(state.to_status({"pid": 1, "procStart": 2}, [])))
    back = PodState.from_status(status)
    assert (back.phase, back.reason, back.message, back.start_time, back.pod_ip) == (
        state.phase,
        state.reason,
        state.message,
        state.start_time,
        state.pod_ip,
    )
    assert (back.pause_pid, back.pause_start, back.events) == (state.pause_pid, state.pause_start, state.events)


def test_status_json_keeps_only_a_final_failure_for_an_adopting_watcher():
    # Running, Pending or Succeeded is worked out again from the containers.
    status = PodState(phase="Running", start_time="2026-12-05T17:00:00Z").to_status({}, [])
    assert "podIP" not in status and status["pause"] is None
    back = PodState.from_status(status)
    assert (back.phase, back.reason, back.start_time) == ("Pending", "", "2026-12-05T17:00:00Z")


def test_a_container_takes_over_its_counts_and_states_from_status_json():
    c = ContainerState()
    c.load_status(
        {
            "name": "web",
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2}},
            "pid": 0,
        }
    )
    assert (c.restart_count, c.state, c.last_state) == (
        4,
        {"waiting": {"reason": "CrashLoopBackOff"}},
        {"terminated": {"exitCode": 2}},
    )
