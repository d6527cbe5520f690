"""ConfigMaps and Secrets as objects the user manages: `apply -f`, `create`, `get`, `delete`.

Everything goes through the real CLI against a private root; what is stored
is checked on disk (os.stat, the JSON file) as well as through `get`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess

import pytest
import yaml
from conftest import NSBOX


def manifest(tmp_path, *docs, name="objects.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def config_map(name="cfg", data=None, **fields):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        **({"data": data} if data is not None else {}),
        **fields,
    }


def secret(name="creds", **fields):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def stored(nsbox, kind_dir, name, namespace="default"):
    """The stored object, read from disk (not through nsbox)."""
    with open(os.path.join(nsbox.root, kind_dir, namespace, f"{name}.json")) as f:
        return json.load(f)


def get(nsbox, kind, name):
    return json.loads(nsbox("get", kind, name, "-o", "json").stdout)


def fails(nsbox, *args):
    """Run a command that must fail with `error:` lines only: its stderr."""
    p = nsbox(*args, check=False)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr and all(line.startswith("error: ") for line in p.stderr.splitlines()), p.stderr
    assert "Traceback" not in p.stderr
    return p.stderr


def stored_names(nsbox):
    found = []
    for kind_dir in ("configmaps", "secrets"):
        base = os.path.join(nsbox.root, kind_dir)
        for _dirpath, _, files in os.walk(base):
            found += [f for f in files if f.endswith(".json")]
    return found


# ---------------------------------------------------------------- apply


def test_apply_creates_then_says_unchanged_then_configured(nsbox, tmp_path):
    path = manifest(tmp_path, config_map(data={"a": "1"}, metadata={"name": "cfg", "labels": {"app": "web"}}))
    assert nsbox("apply", "-f", path).stdout == "configmap/cfg created\n"
    first = get(nsbox, "configmap", "cfg")
    assert nsbox("apply", "-f", path).stdout == "configmap/cfg unchanged\n"
    path = manifest(tmp_path, config_map(data={"a": "2"}, metadata={"name": "cfg", "labels": {"app": "web"}}))
    assert nsbox("apply", "-f", path).stdout == "configmap/cfg configured\n"
    now = get(nsbox, "configmap", "cfg")
    assert now["data"] == {"a": "2"}
    assert now["metadata"]["labels"] == {"app": "web"}
    assert now["metadata"]["uid"] == first["metadata"]["uid"]
    assert now["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert int(now["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_a_label_change_alone_is_configured(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, config_map(data={"a": "1"})))
    changed = config_map(data={"a": "1"}, metadata={"name": "cfg", "labels": {"tier": "x"}})
    assert nsbox("apply", "-f", manifest(tmp_path, changed)).stdout == "configmap/cfg configured\n"


def test_kind_list_with_a_config_map_and_a_secret(nsbox, tmp_path):
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [config_map(data={"k": "v"}), secret(stringData={"password": "s3cret"})],
    }
    out = nsbox("apply", "-f", manifest(tmp_path, doc)).stdout
    assert out == "configmap/cfg created\nsecret/creds created\n"
    assert get(nsbox, "secret", "creds")["type"] == "Opaque"


def test_apply_reads_json_too_and_ignores_server_set_metadata(nsbox, tmp_path):
    doc = config_map(
        data={"a": "b"},
        metadata={"name": "cfg", "uid": "1234", "resourceVersion": "99", "creationTimestamp": "2020-01-01T00:00:00Z"},
    )
    path = tmp_path / "cm.json"
    path.write_text(json.dumps(doc))
    nsbox("apply", "-f", str(path))
    meta = get(nsbox, "cm", "cfg")["metadata"]
    assert meta["uid"] != "1234" and meta["creationTimestamp"] != "2020-01-01T00:00:00Z"


def test_get_output_applied_again_is_unchanged(nsbox, tmp_path):
    nsbox(
        "apply",
        "-f",
        manifest(
            tmp_path,
            config_map(data={"a": "b"}, binaryData={"bin": b64(b"\0\1")}),
            secret(type="kubernetes.io/basic-auth", stringData={"username": "u"}),
        ),
    )
    for kind in ("configmap/cfg", "secret/creds"):
        text = nsbox("get", *kind.split("/"), "-o", "yaml").stdout
        assert nsbox("apply", "-f", "-", input=text).stdout == f"{kind} unchanged\n"


def test_string_data_is_folded_into_base64_data_over_data(nsbox, tmp_path):
    doc = secret(data={"user": b64("admin"), "password": b64("old")}, stringData={"password": "new"})
    nsbox("apply", "-f", manifest(tmp_path, doc))
    obj = stored(nsbox, "secrets", "creds")
    assert "stringData" not in obj
    assert obj["data"] == {"user": b64("admin"), "password": b64("new")}


def test_an_immutable_config_map_refuses_a_data_change(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, config_map(data={"a": "1"}, immutable=True)))
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, config_map(data={"a": "2"}, immutable=True)))
    assert err == (
        'error: The ConfigMap "cfg" is invalid: data: Forbidden: field is immutable when `immutable` is set\n'
    )
    assert get(nsbox, "cm", "cfg")["data"] == {"a": "1"}


def test_an_immutable_object_cannot_become_mutable_again(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, secret(stringData={"k": "v"}, immutable=True)))
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, secret(stringData={"k": "v"}, immutable=False)))
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in err
    assert get(nsbox, "secret", "creds")["immutable"] is True


def test_an_immutable_object_still_takes_new_labels(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, config_map(data={"a": "1"}, immutable=True)))
    relabelled = config_map(data={"a": "1"}, immutable=True, metadata={"name": "cfg", "labels": {"x": "y"}})
    assert nsbox("apply", "-f", manifest(tmp_path, relabelled)).stdout == "configmap/cfg configured\n"


def test_a_secret_type_cannot_change(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, secret(stringData={"username": "u"})))
    err = fails(
        nsbox, "apply", "-f", manifest(tmp_path, secret(type="kubernetes.io/basic-auth", stringData={"username": "u"}))
    )
    assert 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable' in err


@pytest.mark.parametrize(
    "doc, expected",
    [
        (secret(type="kubernetes.io/tls", stringData={"tls.crt": "C"}), ["data[tls.key]: Required value"]),
        (secret(type="kubernetes.io/tls"), ["data[tls.crt]: Required value", "data[tls.key]: Required value"]),
        (secret(type="kubernetes.io/basic-auth"), ["data[username]: Required value", "data[password]: Required value"]),
        (secret(type="kubernetes.io/dockerconfigjson"), ["data[.dockerconfigjson]: Required value"]),
        (
            secret(type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": "{nope"}),
            ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '],
        ),
        (
            secret(type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": "[1]"}),
            ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": json: cannot unmarshal array'],
        ),
    ],
)
def test_secret_types_are_validated_as_the_api_server_does(nsbox, tmp_path, doc, expected):
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, doc))
    lines = err.splitlines()
    assert len(lines) == len(expected), err
    for line, want in zip(lines, expected):
        assert line.startswith("error: " + want), err
    assert stored_names(nsbox) == []


@pytest.mark.parametrize(
    "doc",
    [
        secret(type="kubernetes.io/tls", stringData={"tls.crt": "C", "tls.key": "K"}),
        secret(type="kubernetes.io/basic-auth", stringData={"password": ""}),
        secret(type="kubernetes.io/dockerconfigjson", stringData={".dockerconfigjson": '{"auths": {}}'}),
        secret(type="example.com/custom", stringData={"anything": "goes"}),
    ],
)
def test_secrets_that_satisfy_their_type_are_created(nsbox, tmp_path, doc):
    assert nsbox("apply", "-f", manifest(tmp_path, doc)).stdout == "secret/creds created\n"


def test_invalid_keys_names_and_fields_are_reported_like_the_api_server(nsbox, tmp_path):
    doc = config_map(
        name="Bad_Name", data={"bad key": "x", "dup": "y"}, binaryData={"dup": b64("z"), "b": "A=AA"}, extra=1
    )
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, doc))
    assert 'error: unknown field "extra"' in err
    assert 'error: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' in err
    assert 'error: data[bad key]: Invalid value: "bad key": a valid config key must consist of' in err
    assert 'error: data[dup]: Invalid value: "dup": duplicate of key present in binaryData' in err
    assert (
        'error: ConfigMap in version "v1" cannot be handled as a ConfigMap: '
        "illegal base64 data at input byte 1 (in binaryData[b])"
    ) in err


def test_secret_data_must_be_base64_and_its_values_are_never_shown(nsbox, tmp_path):
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, secret(data={"password": "hunter2!"})))
    assert "illegal base64 data at input byte 7 (in data[password])" in err
    assert "hunter2" not in err


def test_more_than_one_mebibyte_of_data_is_too_long(nsbox, tmp_path):
    half = "x" * (512 * 1024)
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, config_map(data={"a": half, "b": half + "y"})))
    assert err == "error: []: Too long: must have at most 1048576 bytes\n"
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, secret(stringData={"a": half, "b": half + "y"})))
    assert err == "error: data: Too long: must have at most 1048576 bytes\n"


def test_nothing_is_created_when_any_document_is_invalid(nsbox, tmp_path):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "command": ["sleep", "60"]}]},
    }
    path = manifest(tmp_path, config_map(data={"a": "1"}), pod, secret(type="kubernetes.io/tls"))
    err = fails(nsbox, "apply", "-f", path)
    assert "#doc3: data[tls.crt]: Required value" in err
    assert stored_names(nsbox) == []
    assert nsbox("get", "pods").stdout == ""


def test_a_refused_update_stops_the_whole_file(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, config_map(data={"a": "1"}, immutable=True)))
    path = manifest(tmp_path, config_map(name="other", data={"b": "2"}), config_map(data={"a": "2"}, immutable=True))
    fails(nsbox, "apply", "-f", path)
    fails(nsbox, "get", "cm", "other")


def test_duplicate_objects_in_one_file_are_refused(nsbox, tmp_path):
    err = fails(nsbox, "apply", "-f", manifest(tmp_path, config_map(data={}), config_map(data={})))
    assert 'metadata.name: Duplicate value: "cfg"' in err


def test_objects_are_stored_before_the_pods_of_the_same_file(nsbox, tmp_path):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "command": ["sleep", "60"]}]},
    }
    out = nsbox("apply", "-f", manifest(tmp_path, pod, config_map(data={"a": "1"}))).stdout
    assert out == "configmap/cfg created\npod/web created\n"


def test_namespace_of_the_document_or_of_n(nsbox, tmp_path):
    nsbox("-n", "team", "apply", "-f", manifest(tmp_path, config_map(data={"a": "1"})))
    doc = config_map(data={}, metadata={"name": "there", "namespace": "other"})
    nsbox("apply", "-f", manifest(tmp_path, doc))
    assert os.path.exists(os.path.join(nsbox.root, "configmaps", "team", "cfg.json"))
    assert os.path.exists(os.path.join(nsbox.root, "configmaps", "other", "there.json"))
    err = fails(nsbox, "-n", "team", "apply", "-f", manifest(tmp_path, doc))
    assert "does not match the namespace" in err


# ---------------------------------------------------------------- create


def test_create_configmap_from_literals_files_and_a_directory(nsbox, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.properties").write_text("x=1\n")
    (tmp_path / "conf" / "logo.bin").write_bytes(b"\xff\x00\xfe")
    (tmp_path / "conf" / "sub").mkdir()  # not a regular file: skipped
    (tmp_path / "conf" / "link").symlink_to(tmp_path / "conf" / "app.properties")
    (tmp_path / "single.txt").write_text("one")
    out = nsbox(
        "create",
        "configmap",
        "cfg",
        "--from-literal",
        "greeting='hello'",
        "--from-literal",
        "eq=a=b",
        "--from-file",
        str(tmp_path / "conf"),
        "--from-file",
        f"renamed={tmp_path / 'single.txt'}",
    ).stdout
    assert out == "configmap/cfg created\n"
    obj = get(nsbox, "configmap", "cfg")
    assert obj["data"] == {"greeting": "hello", "eq": "a=b", "app.properties": "x=1\n", "renamed": "one"}
    assert obj["binaryData"] == {"logo.bin": b64(b"\xff\x00\xfe")}


def test_create_configmap_from_an_env_file(nsbox, tmp_path):
    env = tmp_path / "app.env"
    env.write_text('\ufeff# comment\n\n  HOST=db.local\nEMPTY=\nQUOTED="kept"\nFROM_ENV\n')
    p = subprocess.run(
        NSBOX + ["--root", nsbox.root, "create", "cm", "cfg", "--from-env-file", str(env)],
        capture_output=True,
        text=True,
        env={**os.environ, "FROM_ENV": "inherited"},
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert get(nsbox, "cm", "cfg")["data"] == {
        "HOST": "db.local",
        "EMPTY": "",
        "QUOTED": '"kept"',
        "FROM_ENV": "inherited",
    }


def test_create_refuses_bad_env_files_and_mixing_them(nsbox, tmp_path):
    env = tmp_path / "bad.env"
    env.write_text("1ABC=x\n")
    assert fails(nsbox, "create", "cm", "cfg", "--from-env-file", str(env)).startswith(
        'error: "1ABC" is not a valid key name: a valid environment variable name must consist of'
    )
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-env-file", str(env), "--from-literal", "a=b")
        == "error: from-env-file cannot be combined with from-file or from-literal\n"
    )
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-env-file", str(tmp_path))
        == "error: env config file cannot be a directory\n"
    )


def test_create_refuses_duplicate_and_invalid_keys_as_kubectl(nsbox, tmp_path):
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-literal", "a=1", "--from-literal", "a=2")
        == 'error: cannot add key "a", another key by that name already exists in Data for ConfigMap "cfg"\n'
    )
    assert (
        fails(nsbox, "create", "secret", "generic", "s", "--from-literal", "a=1", "--from-literal", "a=2")
        == "error: cannot add key a, another key by that name already exists\n"
    )
    assert fails(nsbox, "create", "cm", "cfg", "--from-literal", "bad key=1").startswith(
        'error: "bad key" is not a valid key name for a ConfigMap: a valid config key'
    )
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-literal", "novalue")
        == "error: invalid literal source novalue, expected key=value\n"
    )
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-file", f"k={tmp_path}")
        == "error: cannot give a key name for a directory path\n"
    )
    assert (
        fails(nsbox, "create", "cm", "cfg", "--from-file", "/nonexistent/x")
        == "error: error reading /nonexistent/x: no such file or directory\n"
    )
    assert stored_names(nsbox) == []


def test_create_an_existing_name_fails(nsbox):
    nsbox("create", "configmap", "cfg", "--from-literal", "a=1")
    assert (
        fails(nsbox, "create", "configmap", "cfg", "--from-literal", "a=2")
        == 'error: failed to create configmap: configmaps "cfg" already exists\n'
    )
    assert get(nsbox, "cm", "cfg")["data"] == {"a": "1"}


def test_create_secret_generic_with_a_type(nsbox, tmp_path):
    (tmp_path / "tls.crt").write_text("CERT")
    (tmp_path / "tls.key").write_text("KEY")
    out = nsbox(
        "create",
        "secret",
        "generic",
        "tls",
        "--type",
        "kubernetes.io/tls",
        "--from-file",
        str(tmp_path / "tls.crt"),
        "--from-file",
        str(tmp_path / "tls.key"),
    ).stdout
    assert out == "secret/tls created\n"
    obj = stored(nsbox, "secrets", "tls")
    assert obj["type"] == "kubernetes.io/tls"
    assert obj["data"] == {"tls.crt": b64("CERT"), "tls.key": b64("KEY")}
    err = fails(
        nsbox,
        "create",
        "secret",
        "generic",
        "half",
        "--type",
        "kubernetes.io/tls",
        "--from-file",
        str(tmp_path / "tls.crt"),
    )
    assert err == 'error: Secret "half" is invalid: data[tls.key]: Required value\n'


def test_create_dry_run_prints_and_stores_nothing(nsbox):
    out = nsbox("create", "cm", "cfg", "--from-literal", "a=1", "--dry-run=client", "-o", "yaml").stdout
    assert yaml.safe_load(out) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"a": "1"},
        "metadata": {"name": "cfg", "namespace": "default"},
    }
    assert (
        nsbox("create", "cm", "cfg", "--from-literal", "a=1", "--dry-run=client").stdout
        == "configmap/cfg created (dry run)\n"
    )
    assert stored_names(nsbox) == []


# ---------------------------------------------------------------- get and delete


def test_get_tables(nsbox, tmp_path):
    nsbox(
        "apply",
        "-f",
        manifest(
            tmp_path,
            config_map(data={"a": "1"}, binaryData={"b": b64("x")}),
            secret(type="kubernetes.io/basic-auth", stringData={"username": "u", "password": "topsecret"}),
        ),
    )
    lines = nsbox("get", "configmaps").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["cfg", "2"]
    out = nsbox("get", "secrets").stdout
    assert out.splitlines()[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert out.splitlines()[1].split()[:3] == ["creds", "kubernetes.io/basic-auth", "2"]
    assert "topsecret" not in out and b64("topsecret") not in out
    assert nsbox("get", "cm", "-o", "name").stdout == "configmap/cfg\n"


def test_get_all_namespaces_and_selector(nsbox, tmp_path):
    nsbox("-n", "a", "create", "cm", "one", "--from-literal", "k=v")
    nsbox(
        "-n",
        "b",
        "apply",
        "-f",
        manifest(tmp_path, config_map("two", {}, metadata={"name": "two", "labels": {"t": "x"}})),
    )
    lines = nsbox("get", "cm", "-A").stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "DATA", "AGE"]
    assert [ln.split()[:2] for ln in lines[1:]] == [["a", "one"], ["b", "two"]]
    assert [
        o["metadata"]["name"] for o in json.loads(nsbox("get", "cm", "-A", "-l", "t=x", "-o", "json").stdout)["items"]
    ] == ["two"]
    p = nsbox("get", "cm")
    assert p.stdout == "" and p.stderr == "No resources found in default namespace.\n"


def test_get_lists_by_name_as_the_api_server_does(tmp_path):
    from nsbox import objects

    for name in ("game-config-2", "game-config", "a"):
        objects.save(str(tmp_path), config_map(name, {}, metadata={"name": name, "namespace": "default"}))
    # By name, not by file name: "game-config.json" sorts after "game-config-2.json".
    assert objects.names(str(tmp_path), "ConfigMap", "default") == [
        ("default", "a"),
        ("default", "game-config"),
        ("default", "game-config-2"),
    ]


def test_get_one_object_or_a_list_as_get_pods(nsbox):
    nsbox("create", "cm", "one", "--from-literal", "k=v")
    nsbox("create", "cm", "two", "--from-literal", "k=v")
    assert get(nsbox, "cm", "one")["kind"] == "ConfigMap"
    listed = json.loads(nsbox("get", "cm", "one", "two", "-o", "json").stdout)
    assert listed["kind"] == "List" and [o["metadata"]["name"] for o in listed["items"]] == ["one", "two"]
    assert yaml.safe_load(nsbox("get", "configmap", "two", "-o", "yaml").stdout)["data"] == {"k": "v"}


def test_get_missing_object(nsbox):
    assert fails(nsbox, "get", "configmaps", "x") == 'error: configmaps "x" not found\n'
    assert fails(nsbox, "get", "secret", "x", "-o", "yaml") == 'error: secrets "x" not found\n'


def test_delete_by_name_all_and_file(nsbox, tmp_path):
    nsbox("create", "cm", "one", "--from-literal", "k=v")
    nsbox("create", "secret", "generic", "two", "--from-literal", "k=v")
    assert nsbox("delete", "configmap", "one").stdout == 'configmap "one" deleted\n'
    assert fails(nsbox, "delete", "cm", "one") == 'error: configmaps "one" not found\n'
    assert nsbox("delete", "secret", "--all").stdout == 'secret "two" deleted\n'
    path = manifest(tmp_path, config_map(data={"a": "1"}), secret(stringData={"k": "v"}))
    nsbox("apply", "-f", path)
    assert nsbox("delete", "-f", path).stdout == 'configmap "cfg" deleted\nsecret "creds" deleted\n'
    assert stored_names(nsbox) == []


# ---------------------------------------------------------------- on disk


def test_files_are_0600_in_0700_directories(nsbox, tmp_path):
    nsbox("apply", "-f", manifest(tmp_path, config_map(data={"a": "1"}), secret(stringData={"k": "v"})))
    for kind_dir, name in (("configmaps", "cfg"), ("secrets", "creds")):
        for d in (os.path.join(nsbox.root, kind_dir), os.path.join(nsbox.root, kind_dir, "default")):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
        f = os.path.join(nsbox.root, kind_dir, "default", f"{name}.json")
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f


def test_a_killed_apply_never_leaves_half_an_object(nsbox, tmp_path):
    """Kill `apply` at ever later moments while it rewrites a large object: the file on disk
    is always a whole object, the old one or the new one."""
    big = [config_map(data={"v": letter * (900 * 1024)}) for letter in "ab"]
    paths = [manifest(tmp_path, doc, name=f"{i}.yaml") for i, doc in enumerate(big)]
    nsbox("apply", "-f", paths[0])
    target = os.path.join(nsbox.root, "configmaps", "default", "cfg.json")
    for attempt in range(24):
        p = nsbox.popen("apply", "-f", paths[(attempt + 1) % 2])
        try:
            p.wait(timeout=0.02 * attempt)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        with open(target) as f:
            value = json.load(f)["data"]["v"]
        assert value in (big[0]["data"]["v"], big[1]["data"]["v"])


def test_names_from_the_command_line_never_leave_the_store(nsbox, tmp_path):
    nsbox("create", "cm", "cfg", "--from-literal", "a=1")
    # Refused on the command line (docs/security.md, section 9), before the store is looked at.
    assert fails(nsbox, "get", "cm", "../default/cfg").startswith('error: invalid name "../default/cfg": ')
    assert fails(nsbox, "delete", "cm", "../default/cfg").startswith('error: invalid name "../default/cfg": ')
    assert os.path.exists(os.path.join(nsbox.root, "configmaps", "default", "cfg.json"))


@pytest.mark.parametrize(
    "text, offset",
    [
        ("YWJj", None),
        ("YWI=", None),
        ("YQ==", None),
        ("YW\nJj\n", None),
        ("", None),
        ("YQ", 0),
        ("YWJjYQ", 4),
        ("YQ=", 3),
        ("YQ=x", 2),
        ("YQ==YQ==", 4),
        ("A=AA", 1),
        ("hunter2!", 7),
    ],
)
def test_base64_is_refused_where_the_api_server_refuses_it(text, offset):
    from nsbox import objects

    assert objects._base64_error_at(text) == offset


def test_an_invalid_namespace_from_n_is_refused(nsbox, tmp_path):
    err = fails(nsbox, "-n", "../up", "apply", "-f", manifest(tmp_path, config_map(data={"a": "1"})))
    # Checked on the command line before the manifest is read, as every command's -n is.
    assert err.startswith('error: invalid namespace "../up": a lowercase RFC 1123 label')
    fails(nsbox, "-n", "Bad", "create", "cm", "cfg", "--from-literal", "a=1")
    assert stored_names(nsbox) == [] and not os.path.exists(os.path.join(nsbox.root, "up"))
