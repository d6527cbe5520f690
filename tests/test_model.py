"""The pod model's plain records and pod uids (no kernel needed)."""

from __future__ import annotations

import uuid

import pytest

from nsbox.model import ContainerSpec, EnvVar, PodSpec
from nsbox.pods import new_pod_uid


def test_pod_uids_are_random_rfc4122_version_4_uuids():
    uids = {new_pod_uid() for _ in range(1000)}
    assert len(uids) == 1000
    for u in uids:
        parsed = uuid.UUID(u)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, u)


def test_a_record_default_is_made_fresh_for_each_instance():
    a, b = PodSpec(name="a"), PodSpec(name="b")
    a.labels["x"] = "1"
    a.containers.append(ContainerSpec(name="c", command=["true"]))
    assert b.labels == {} and b.containers == []


def test_records_take_positional_and_keyword_arguments_and_refuse_unknown_or_missing_ones():
    assert EnvVar("A", "1") == EnvVar(name="A", value="1")
    assert EnvVar("A") != EnvVar("A", "1")
    with pytest.raises(TypeError):
        EnvVar(name="A", bogus=1)
    with pytest.raises(TypeError):
        EnvVar()
    with pytest.raises(TypeError):
        EnvVar("A", name="B")


def test_to_dict_copies_nested_records_and_round_trips():
    p = PodSpec(
        name="p", labels={"a": "b"}, containers=[ContainerSpec(name="c", command=["sh"], env=[EnvVar("K", "V")])]
    )
    d = p.to_dict()
    [env] = d["containers"][0]["env"]
    assert type(env) is dict and (env["name"], env["value"], env["field_ref"]) == ("K", "V", "")
    d["labels"]["a"] = "changed"
    assert p.labels == {"a": "b"}
    assert PodSpec.from_dict(p.to_dict()) == p
