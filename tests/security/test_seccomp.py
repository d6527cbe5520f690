"""System-call filtering (docs/security.md, "System calls"): the runtime default profile, Unconfined,
Localhost profiles, Kubernetes' precedence, and the processes that get the filter.

Every attack on the filter is first made where no filter stands (an Unconfined container with the
same capabilities, or a privileged one): there it reaches the kernel and fails with the kernel's
own errno, or succeeds harmlessly; under the default profile it fails with EPERM. So a test proves
the filter, not the environment.
"""

from __future__ import annotations

import json
import os

import attacks
import pytest
from attacks import attempt
from conftest import private_root, wait_for

# Two pods: "confined" runs the default profile (its exec probe and postStart hook too); "mixed"
# says Unconfined at pod level, which its container "open" takes and its container "strict"
# overrides with RuntimeDefault (Kubernetes' precedence).
PODS = """
apiVersion: v1
kind: Pod
metadata:
  name: confined
spec:
  containers:
  - name: confined
    command: ["sleep", "600"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "grep ^Seccomp: /proc/self/status > /tmp/post-start"]
    readinessProbe:
      exec:
        command: ["sh", "-c", "grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status"]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: mixed
spec:
  securityContext:
    seccompProfile:
      type: Unconfined
  containers:
  - name: open
    command: ["sleep", "600"]
  - name: strict
    command: ["sleep", "600"]
    securityContext:
      seccompProfile:
        type: RuntimeDefault
"""

# name → what it does without a filter: the kernel's own answer ("ok" = it succeeded, harmlessly).
CALLS = {
    "unshare-user": "ok",  # a user namespace: root of its own, the first step of many escapes
    "keyctl-join": "ok",  # the keyring is not namespaced
    "add_key": "ok",
    "bpf": "E2BIG",
    "perf_event_open": "E2BIG",
    "kexec_load": None,  # purely capability-gated (or absent): anything but EPERM
    "finit_module": None,
    "open_by_handle_at": "EBADF",  # the "shocker" host file read
    "userfaultfd": "ok",
    "vsock": "ok",
}


@pytest.fixture(scope="module")
def box():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root() as n:
        n("apply", "-f", "-", input=PODS)
        for pod, container in (("confined", "confined"), ("mixed", "open"), ("mixed", "strict")):
            n.pid(pod, container)
        yield n


def seccomp_status(pid: int) -> tuple[int, int]:
    """(Seccomp mode, number of filters) of a process, as /proc shows them from outside."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["Seccomp"]), int(fields.get("Seccomp_filters", "0"))


def verdict_errno(verdict: str) -> str:
    return "ok" if verdict.startswith("SUCCEEDED") else verdict.split()[1]


@pytest.mark.parametrize("call", sorted(CALLS))
def test_the_default_profile_refuses_what_reaches_the_kernel_without_it(box, call):
    without = verdict_errno(attempt(box, "mixed", attacks.SYSCALL, call, container="open"))
    expected = CALLS[call]
    if expected is None:
        assert without != "EPERM", f"{call} is refused even without a filter: the test would prove nothing"
    else:
        assert without == expected, f"{call} without a filter: {without}"
    assert attempt(box, "confined", attacks.SYSCALL, call) == "FAILED EPERM"
    assert attempt(box, "mixed", attacks.SYSCALL, call, container="strict") == "FAILED EPERM"


def test_clone3_says_enosys_so_that_libc_falls_back_to_clone(box):
    assert attempt(box, "mixed", attacks.SYSCALL, "clone3", container="open") == "FAILED EINVAL"
    assert attempt(box, "confined", attacks.SYSCALL, "clone3") == "FAILED ENOSYS"


def test_describe_shows_the_pod_level_profile_as_kubectl_does(box):
    described = box("describe", "pod", "mixed").stdout.splitlines()
    assert [line.split() for line in described if line.startswith("SeccompProfile:")] == [
        ["SeccompProfile:", "Unconfined"]
    ]
    assert not [line for line in box("describe", "pod", "confined").stdout.splitlines() if line.startswith("Seccomp")]


def test_the_filter_is_seen_from_outside_and_follows_the_precedence(box):
    assert seccomp_status(box.pid("confined")) == (2, 1)
    assert seccomp_status(box.pid("mixed", "strict")) == (2, 1)
    assert seccomp_status(box.pid("mixed", "open")) == (0, 0)
    shown = {c["name"]: c["seccomp"] for c in box.inspect("mixed")["containers"]}
    assert shown["open"] == {"profile": "Unconfined", "filter": None}
    assert shown["strict"]["profile"] == "RuntimeDefault" and shown["strict"]["filter"].endswith(".bpf")
    assert shown["strict"]["filter"].startswith(os.path.join(box.root, "cache", "seccomp") + "/")


def test_probes_hooks_and_exec_get_the_containers_filter(box):
    # The readiness probe passes only when it runs filtered; the postStart hook wrote what it saw.
    wait_for(lambda: box.container_state("confined").get("ready"), timeout=30, what="the filtered probe")
    p = box("exec", "confined", "--", "cat", "/tmp/post-start")
    assert p.stdout.split() == ["Seccomp:", "2"]
    p = box("exec", "confined", "--", "grep", "^Seccomp", "/proc/self/status")
    assert p.stdout.split() == ["Seccomp:", "2", "Seccomp_filters:", "1"]


def test_a_privileged_container_is_unconfined():
    with private_root() as n:
        n("run", "priv", "--privileged", "--", "sleep", "600")
        assert seccomp_status(n.pid("priv")) == (0, 0)
        assert attempt(n, "priv", attacks.SYSCALL, "unshare-user").startswith("SUCCEEDED")


def test_the_init_and_the_main_process_are_filtered_with_no_new_privs():
    """A non-root user gets no_new_privs: the filter goes on last, after the identity switch."""
    with private_root() as n:
        n("run", "inited", "--init", "-u", "1000", "--", "sleep", "600")
        init = n.pid("inited")
        children = wait_for(lambda: open(f"/proc/{init}/task/{init}/children").read().split(), what="main process")
        for pid in (init, int(children[0])):
            assert seccomp_status(pid) == (2, 1)
            assert "NoNewPrivs:\t1" in open(f"/proc/{pid}/status").read()


def test_the_compiled_filter_is_cached_and_reused():
    with private_root() as n:
        n("run", "first", "--", "sleep", "600")
        n.pid("first")
        cache = os.path.join(n.root, "cache", "seccomp")
        (name,) = os.listdir(cache)
        before = os.stat(os.path.join(cache, name))
        n("run", "second", "--", "sleep", "600")
        n.pid("second")
        assert os.listdir(cache) == [name]
        assert os.stat(os.path.join(cache, name)).st_mtime_ns == before.st_mtime_ns
        # Other capabilities are another filter (the profile's rules depend on them).
        n("run", "admin", "--cap-add", "SYS_ADMIN", "--", "sleep", "600")
        n.pid("admin")
        assert len(os.listdir(cache)) == 2


LOCALHOST = """
apiVersion: v1
kind: Pod
metadata:
  name: local
spec:
  containers:
  - name: nomkdir
    command: ["sleep", "600"]
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: profiles/nomkdir.json}
  - name: missing
    command: ["sleep", "600"]
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: profiles/missing.json}
  - name: broken
    command: ["sleep", "600"]
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: profiles/broken.json}
  - name: nocapset
    command: ["sleep", "600"]
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: profiles/nocapset.json}
"""


def deny(*names: str) -> str:
    return json.dumps(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": list(names), "action": "SCMP_ACT_ERRNO"}]}
    )


def test_localhost_profiles_and_their_start_errors():
    with private_root() as n:
        profiles = os.path.join(n.root, "seccomp", "profiles")
        os.makedirs(profiles)
        with open(os.path.join(profiles, "nomkdir.json"), "w") as f:
            f.write(deny("mkdir", "mkdirat"))
        with open(os.path.join(profiles, "broken.json"), "w") as f:
            f.write('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [')
        with open(os.path.join(profiles, "nocapset.json"), "w") as f:
            f.write(deny("capset"))
        n("apply", "-f", "-", input=LOCALHOST)
        n.pid("local", "nomkdir")
        p = n("exec", "local", "-c", "nomkdir", "--", "mkdir", "/tmp/made", check=False)
        assert p.returncode != 0 and "Operation not permitted" in p.stderr
        p = n("exec", "local", "-c", "nomkdir", "--", "touch", "/tmp/file")  # the rest is allowed
        assert not os.path.exists("/tmp/made")

        def waiting(name: str) -> dict:
            return n.container_state("local", name)["state"].get("waiting") or {}

        wait_for(lambda: waiting("missing").get("reason") == "CreateContainerError", what="missing's start error")
        wait_for(lambda: waiting("broken").get("reason") == "CreateContainerError", what="broken's start error")
        path = os.path.join(profiles, "missing.json")
        assert waiting("missing")["message"] == f'cannot load seccomp profile "{path}": No such file or directory'
        assert waiting("broken")["message"].startswith("seccomp profile localhost/profiles/broken.json: not valid JSON")

        # A profile that forbids a step nsbox takes after installing it (no no_new_privs: it goes
        # on before the capabilities are set) is a start error that says so.
        def start_error() -> dict | None:
            st = n.container_state("local", "nocapset")  # restarted after a back-off: then in lastState
            return st["state"].get("terminated") or st["lastState"].get("terminated")

        terminated = wait_for(start_error, what="nocapset's start error")
        assert terminated["reason"] == "StartError"
        assert "capabilities (capset) failed: Operation not permitted" in terminated["message"]
        assert "seccomp profile localhost/profiles/nocapset.json" in terminated["message"]
        described = n("describe", "pod", "local").stdout
        assert "CreateContainerError" in described and "cannot load seccomp profile" in described
        assert "Traceback" not in described
        log = open(os.path.join(n.root, "pods", n.uid("local"), "watcher.log")).read()
        assert "Traceback" not in log


@pytest.mark.parametrize(
    "profile, message",
    [
        ("{type: Localhost, localhostProfile: /etc/x.json}", "localhostProfile: Invalid value"),
        ("{type: Localhost, localhostProfile: ../x.json}", "must not contain '..'"),
        ("{type: Localhost}", "localhostProfile: Required value"),
        ("{localhostProfile: x.json}", "seccompProfile.type: Required value"),
        ("{type: RuntimeDefault, localhostProfile: x.json}", "can only be set if seccomp type is Localhost"),
        ("{type: Strict}", 'Unsupported value: "Strict"'),
    ],
)
def test_seccomp_profile_fields_are_validated_as_the_api_server_does(nsbox, profile, message):
    manifest = f"""
apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  securityContext:
    seccompProfile: {profile}
  containers:
  - name: c
    command: ["true"]
"""
    p = nsbox("apply", "-f", "-", input=manifest, check=False)
    assert p.returncode == 1 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert "bad" not in nsbox("get", "pods").stdout


@pytest.mark.parametrize(
    "profile, message",
    [
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, 'defaultAction: unsupported action "SCMP_ACT_NOTIFY"'),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "defaultErrnoRet: must be a number"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}, 'unknown architecture "SCMP_'),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": []}}, "syscalls: must be a list of objects"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}
                ],
            },
            "syscalls[0].args[0].index: must be 0 to 5",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_LIKE"}]}
                ],
            },
            'syscalls[0].args[0].op: unsupported operator "SCMP_CMP_LIKE"',
        ),
        ([], "not a JSON object"),
    ],
)
def test_an_invalid_profile_is_a_clear_error(profile, message):
    from nsbox import seccomp

    with pytest.raises(seccomp.ProfileProblem) as e:
        seccomp.compile_profile(json.dumps(profile).encode(), 0)
    assert message in str(e.value)


def test_the_default_profile_depends_on_the_capabilities():
    """includes.caps: SYS_ADMIN allows mount, unshare and the rest, and lifts the clone flag rule."""
    from nsbox import kube, seccomp, security

    with open(seccomp.DEFAULT_PROFILE, "rb") as f:
        data = f.read()
    default = security.mask(frozenset(kube.DEFAULT_CAPABILITIES))
    admin = default | 1 << kube.CAPABILITY_NUMBERS["SYS_ADMIN"]
    programs = {seccomp.compile_profile(data, caps) for caps in (default, admin, default)}
    assert len(programs) == 2  # the same input compiles to the same program; another set differs
    assert all(len(p) % 8 == 0 and 0 < len(p) <= 4096 * 8 for p in programs)
