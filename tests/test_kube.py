"""The Kubernetes rules of nsbox/kube/: pure functions, no root needed."""

import pytest

from nsbox import kube

LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


# --- names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "web", "my-name", "123-abc", "a" * 63])
def test_valid_dns1123_labels(name):
    assert kube.validate_dns1123_label(name) is None


@pytest.mark.parametrize("name", ["", "Web", "web_1", "-web", "web-", "a.b", "wéb"])
def test_invalid_dns1123_label_gets_the_kubernetes_message(name):
    assert kube.validate_dns1123_label(name) == LABEL_MESSAGE


def test_too_long_label_says_so():
    assert kube.validate_dns1123_label("a" * 64) == "must be no more than 63 characters"
    assert kube.dns1123_label_errors("A" * 64) == ["must be no more than 63 characters", LABEL_MESSAGE]


def test_pod_names_are_subdomains():
    assert kube.validate_pod_name("web.v1") is None
    assert kube.validate_pod_name("a" * 253) is None
    assert "no more than 253 characters" in kube.validate_pod_name("a" * 254)
    assert kube.validate_pod_name("Web_1").startswith("a lowercase RFC 1123 subdomain must consist")
    assert kube.validate_dns1123_label("web.v1") == LABEL_MESSAGE


def test_label_keys_and_values():
    assert kube.qualified_name_errors("app") == []
    assert kube.qualified_name_errors("example.com/app.Name_1") == []
    assert kube.qualified_name_errors("bad key")[0].startswith("name part must consist of")
    assert kube.qualified_name_errors("Bad_Prefix/x")[0].startswith("prefix part a lowercase RFC 1123")
    assert kube.qualified_name_errors("a/b/c")[0].startswith("a qualified name must consist")
    assert kube.label_value_errors("") == []
    assert kube.label_value_errors("v1.2_x") == []
    assert kube.label_value_errors("no spaces")[0].startswith("a valid label must be an empty string")


def test_env_var_names_are_printable_ascii_without_equals():
    assert kube.env_var_name_error("MY_VAR.1-x") is None
    assert kube.env_var_name_error("1st") is None
    assert kube.env_var_name_error("A=B") is not None
    assert kube.env_var_name_error("") is not None
    assert kube.env_var_name_error("tab\there") is not None


# --- quantities ------------------------------------------------------------------


@pytest.mark.parametrize(
    "q,millis",
    [
        ("500m", 500),
        ("1", 1000),
        ("0.5", 500),
        (2, 2000),
        (0.25, 250),
        ("1.5", 1500),
        ("100u", 1),
        ("1n", 1),
        ("2k", 2_000_000),
        ("1e-3", 1),
        ("0", 0),
        (".5", 500),
        ("+1", 1000),
    ],
)
def test_parse_cpu(q, millis):
    assert kube.parse_cpu(q) == millis


@pytest.mark.parametrize(
    "q,nbytes",
    [
        ("128Mi", 128 * 2**20),
        ("1G", 10**9),
        ("1e3", 1000),
        ("100k", 100_000),
        ("512", 512),
        (512, 512),
        ("1Ki", 1024),
        ("1.5Gi", 3 * 2**29),
        ("1E3", 1000),
        ("1E", 10**18),
        ("0.5", 1),
        ("128974848000m", 128974848),
        ("2Ti", 2 * 2**40),
    ],
)
def test_parse_memory(q, nbytes):
    assert kube.parse_memory(q) == nbytes


@pytest.mark.parametrize("junk", ["abc", "", "1 Gi", "1GB", "1ki", "--1", "1e", "1.2.3", "Mi", True, None, [1]])
def test_junk_quantities_raise_a_clear_value_error(junk):
    with pytest.raises(ValueError) as err:
        kube.parse_memory(junk)
    assert "invalid quantity" in str(err.value)


def test_negative_quantity_is_refused():
    with pytest.raises(kube.QuantityError) as err:
        kube.parse_cpu("-1")
    assert err.value.reason == "must be greater than or equal to 0"


def test_regex_message_is_the_kubernetes_one():
    with pytest.raises(kube.QuantityError) as err:
        kube.parse_cpu("abc")
    assert err.value.reason == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


def test_absurd_quantity_is_too_large():
    with pytest.raises(ValueError):
        kube.parse_memory("1e999")


@pytest.mark.parametrize(
    "n,text",
    [
        (128 * 2**20, "128Mi"),
        (10**9, "1G"),
        (1024, "1Ki"),
        (1500, "1500"),
        (0, "0"),
        (2**30, "1Gi"),
        (1000, "1k"),
        (3 * 2**29, "1536Mi"),
    ],
)
def test_format_quantity_bytes(n, text):
    assert kube.format_quantity_bytes(n) == text
    assert kube.parse_memory(text) == n


def test_format_cpu():
    assert kube.format_cpu(2000) == "2"
    assert kube.format_cpu(500) == "500m"
    assert kube.parse_cpu(kube.format_cpu(1500)) == 1500


def test_cpu_quota_has_a_floor_of_one_millisecond():
    assert kube.cpu_quota_us(500) == 50_000
    assert kube.cpu_quota_us(2000) == 200_000
    assert kube.cpu_quota_us(1) == 1_000


def test_pod_limit_is_the_sum_only_when_every_container_has_one():
    assert kube.pod_resource_limit([100, 200]) == 300
    assert kube.pod_resource_limit([100, None]) is None
    assert kube.pod_resource_limit([100, 200], [500]) == 500
    assert kube.pod_resource_limit([100, 200], [None]) is None
    assert kube.pod_resource_limit([]) is None


# --- grace periods -------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag,force,pod_value,expected",
    [
        (None, False, None, 30),  # the default
        (None, False, 45, 45),  # terminationGracePeriodSeconds
        (10, False, 45, 10),  # --grace-period wins
        (0, False, 45, 1),  # --grace-period=0 without --force means 1
        (-1, False, 45, 45),  # kubectl's "not given"
        (None, False, 0, 0),  # a pod may ask for 0 itself
        (None, False, -3, 1),  # a negative pod value counts as 1
        (0, True, 45, 0),  # --force: immediate
        (None, True, 45, 0),
        (20, True, 45, 0),
    ],
)
def test_effective_grace_period(flag, force, pod_value, expected):
    assert kube.effective_grace_period(flag, force, pod_value) == expected


def test_sigkill_never_comes_sooner_than_two_seconds_after_sigterm():
    assert kube.sigkill_at(grace_deadline=30, sigterm_sent=0) == 30
    assert kube.sigkill_at(grace_deadline=30, sigterm_sent=29.5) == 31.5
    assert kube.sigkill_at(grace_deadline=0, sigterm_sent=0) == 2


# --- restarts ------------------------------------------------------------------------


def test_backoff_first_restart_is_immediate_then_doubles_to_the_cap():
    delays = [kube.restart_backoff(n) for n in range(8)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert kube.restart_backoff(10_000) == 300


def test_backoff_base_and_cap_can_be_changed():
    assert [kube.restart_backoff(n, base=0.5, cap=2) for n in range(5)] == [0, 0.5, 1, 2, 2]


@pytest.mark.parametrize(
    "policy,code,expected",
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 137, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy, code, expected):
    assert kube.should_restart(policy, code) is expected


def test_unknown_restart_policy_is_a_value_error():
    with pytest.raises(ValueError):
        kube.should_restart("Sometimes", 0)


def test_init_containers_are_retried_on_failure_unless_never():
    assert kube.should_restart_init("Always", 1)
    assert kube.should_restart_init("OnFailure", 1)
    assert not kube.should_restart_init("Never", 1)
    assert not kube.should_restart_init("Always", 0)


def test_exit_codes_and_reasons():
    assert kube.exit_code_for_signal(9) == 137
    assert kube.terminated_reason(0) == "Completed"
    assert kube.terminated_reason(2) == "Error"
    assert kube.terminated_reason(137, oom_killed=True) == "OOMKilled"


# --- phases and STATUS -------------------------------------------------------------------


def running(ready=True, restarts=0):
    return {
        "name": "c",
        "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
        "ready": ready,
        "restartCount": restarts,
    }


def waiting(reason, last_exit=None, restarts=0):
    status = {"name": "c", "state": {"waiting": {"reason": reason}}, "ready": False, "restartCount": restarts}
    if last_exit is not None:
        status["lastState"] = {"terminated": {"exitCode": last_exit}}
    return status


def terminated(code, reason=None, signal=None, restarts=0):
    details = {"exitCode": code}
    if reason is None:
        reason = kube.terminated_reason(code)
    if reason:
        details["reason"] = reason
    if signal:
        details["signal"] = signal
    return {"name": "c", "state": {"terminated": details}, "ready": False, "restartCount": restarts}


@pytest.mark.parametrize(
    "containers,init,policy,expected",
    [
        ([waiting("ContainerCreating")], [], "Always", "Pending"),
        ([running()], [], "Always", "Running"),
        ([running(), terminated(0)], [], "Never", "Running"),
        ([terminated(0), terminated(0)], [], "Never", "Succeeded"),
        ([terminated(0), terminated(1)], [], "Never", "Failed"),
        ([terminated(0), terminated(1)], [], "OnFailure", "Running"),
        ([terminated(0)], [], "OnFailure", "Succeeded"),
        ([terminated(0)], [], "Always", "Running"),
        ([waiting("CrashLoopBackOff", last_exit=1)], [], "Always", "Running"),
        ([waiting("PodInitializing")], [running()], "Always", "Pending"),
        ([waiting("PodInitializing")], [terminated(1)], "Never", "Failed"),
        ([waiting("PodInitializing")], [terminated(1)], "Always", "Pending"),
        ([waiting("PodInitializing")], [waiting("CrashLoopBackOff", last_exit=1)], "OnFailure", "Pending"),
        ([running()], [terminated(0)], "Always", "Running"),
        ([], [], "Always", "Running"),
    ],
)
def test_pod_phase(containers, init, policy, expected):
    assert kube.pod_phase(containers, init, policy) == expected


def test_pod_phase_deadline_and_lost_watcher():
    assert kube.pod_phase([running()], [], "Always", deadline_exceeded=True) == "Failed"
    assert kube.pod_phase([running()], [], "Always", watcher_lost=True) == "Unknown"


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(containers=[waiting("ContainerCreating")], phase="Pending"), "ContainerCreating"),
        (dict(containers=[{"name": "c"}], phase="Pending"), "Pending"),
        (dict(containers=[running()], phase="Running"), "Running"),
        (dict(containers=[terminated(0)], phase="Succeeded"), "Completed"),
        (dict(containers=[terminated(1)], phase="Failed"), "Error"),
        (dict(containers=[terminated(137, reason="OOMKilled")], phase="Failed"), "OOMKilled"),
        (dict(containers=[terminated(3, reason="")], phase="Failed"), "ExitCode:3"),
        (dict(containers=[terminated(143, reason="", signal=15)], phase="Failed"), "Signal:15"),
        (dict(containers=[waiting("CrashLoopBackOff", last_exit=1)], phase="Running"), "CrashLoopBackOff"),
        (dict(containers=[running(), terminated(0)], phase="Running"), "NotReady"),
        (dict(containers=[running(), {**running(), "ready": True}], phase="Running"), "Running"),
        (dict(containers=[running()], phase="Running", deletion=True), "Terminating"),
        (dict(containers=[terminated(0)], phase="Succeeded", deletion=True), "Completed"),
        (dict(containers=[running()], phase="Running", watcher_lost=True), "Unknown"),
        (dict(containers=[running()], phase="Running", deletion=True, watcher_lost=True), "Unknown"),
        (
            dict(containers=[waiting("PodInitializing")], init_containers=[terminated(0), running()], phase="Pending"),
            "Init:1/2",
        ),
        (
            dict(
                containers=[waiting("PodInitializing")], init_containers=[terminated(0)], init_total=3, phase="Pending"
            ),
            "Init:1/3",
        ),
        (dict(containers=[waiting("PodInitializing")], init_containers=[terminated(1)], phase="Failed"), "Init:Error"),
        (
            dict(containers=[waiting("PodInitializing")], init_containers=[terminated(2, reason="")], phase="Failed"),
            "Init:ExitCode:2",
        ),
        (
            dict(
                containers=[waiting("PodInitializing")],
                init_containers=[waiting("CrashLoopBackOff", last_exit=1)],
                phase="Pending",
            ),
            "Init:CrashLoopBackOff",
        ),
        (dict(containers=[running()], init_containers=[terminated(0)], phase="Running"), "Running"),
        (
            dict(containers=[terminated(137, reason="Error")], phase="Failed", reason="DeadlineExceeded"),
            "DeadlineExceeded",
        ),
        (dict(containers=[terminated(137, reason="Error")], phase="Failed", reason="Evicted"), "Evicted"),
    ],
)
def test_pod_status_text(kwargs, expected):
    assert kube.pod_status_text(**kwargs) == expected


def test_first_container_reason_wins_like_kubectl():
    assert kube.pod_status_text([terminated(1), waiting("CrashLoopBackOff", 1)], phase="Running") == "Error"


def test_ready_and_restarts_columns():
    containers = [running(restarts=2), waiting("CrashLoopBackOff", last_exit=1, restarts=3)]
    assert kube.pod_ready_text(containers) == "1/2"
    assert kube.pod_restart_count(containers) == 5
    assert kube.pod_restart_count([waiting("PodInitializing")], [waiting("CrashLoopBackOff", 1, restarts=4)]) == 4


# --- $(VAR) expansion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("$(A)-$(B)", "1-two"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("$(A", "$(A"),
        ("end$", "end$"),
        ("", ""),
    ],
)
def test_expand_env_references(text, expected):
    assert kube.expand_env_references(text, {"A": "1", "B": "two"}) == expected


# --- capabilities -----------------------------------------------------------------------------


def test_capability_table_is_complete():
    assert len(kube.CAPABILITY_NUMBERS) == 41
    assert sorted(kube.CAPABILITY_NUMBERS.values()) == list(range(41))
    assert kube.CAPABILITY_NUMBERS["SYS_ADMIN"] == 21
    assert kube.CAPABILITY_NUMBERS["NET_ADMIN"] == 12
    assert kube.CAPABILITY_NUMBERS["CHECKPOINT_RESTORE"] == 40
    assert set(kube.DEFAULT_CAPABILITIES) <= set(kube.CAPABILITY_NUMBERS)
    assert len(kube.DEFAULT_CAPABILITIES) == 14


@pytest.mark.parametrize("name", ["cap_net_admin", "CAP_NET_ADMIN", "NET_ADMIN", "net_admin", " Net_Admin "])
def test_normalize_capability(name):
    assert kube.normalize_capability(name) == "NET_ADMIN"


def test_normalize_all_and_unknown():
    assert kube.normalize_capability("all") == "ALL"
    with pytest.raises(ValueError, match='unknown capability "CAP_FLY"'):
        kube.normalize_capability("CAP_FLY")


def test_effective_capabilities():
    assert kube.effective_capabilities(False) == frozenset(kube.DEFAULT_CAPABILITIES)
    assert kube.effective_capabilities(True) == frozenset(kube.CAPABILITY_NUMBERS)
    assert kube.effective_capabilities(False, add=["NET_ADMIN"], drop=["ALL"]) == {"NET_ADMIN"}
    assert "NET_RAW" not in kube.effective_capabilities(False, drop=["NET_RAW"])
    assert kube.effective_capabilities(False, add=["ALL"], drop=["SYS_ADMIN"]) == frozenset(kube.CAPABILITY_NUMBERS) - {
        "SYS_ADMIN"
    }


def test_kube_imports_only_the_standard_library_it_needs():
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules); import nsbox.kube; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('nsbox')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=__file__.rsplit("/tests/", 1)[0]
    ).stdout
    assert "yaml" not in out and "json" not in out and "decimal" not in out


@pytest.mark.parametrize("offset", [0, 3600, -86400 * 400])
def test_epoch_reads_back_what_rfc3339_wrote(offset):
    import calendar
    import time

    stamp = kube.rfc3339(offset)
    assert kube.epoch(stamp) == calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(kube.epoch(stamp) - (time.time() + offset)) < 2


def test_epoch_of_a_fixed_time():
    assert kube.epoch("1970-01-02T00:00:01Z") == 86401
    assert kube.epoch("2026-11-26T23:24:58Z") == 1795735498


# --- hostname, /etc/hosts, sysctls, groups -----------------------------------------


def test_a_long_hostname_is_cut_to_63_and_loses_trailing_dashes_and_dots():
    assert kube.truncate_pod_hostname("a" * 63) == "a" * 63
    assert kube.truncate_pod_hostname("a" * 61 + "-." + "b" * 10) == "a" * 61
    assert kube.truncate_pod_hostname("a" * 64) == "a" * 63
    assert kube.truncate_pod_hostname("short-") == "short-"  # only a truncated name is trimmed


def test_the_hosts_file_is_written_in_the_kubelets_format():
    from nsbox.model import HostAlias

    assert kube.managed_hosts_file("10.88.0.5", "web", [HostAlias("10.1.2.3", ["foo.local", "bar"])]) == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.88.0.5\tweb\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "10.1.2.3\tfoo.local\tbar\n"
    )
    assert kube.managed_hosts_file("", "web").endswith("fe00::2\tip6-allrouters\n127.0.1.1\tweb\n")
    assert kube.host_network_hosts_file("127.0.0.1 localhost\n", [HostAlias("1.2.3.4", ["x"])]) == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        "\n# Entries added by HostAliases.\n1.2.3.4\tx\n"
    )


def test_sysctl_namespaces_and_paths():
    assert [
        kube.sysctl_namespace(n)
        for n in (
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "kernel.shm_rmid_forced",
            "kernel.msgmnb",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.semx",
            "vm.swappiness",
            "kernel.hostname",
            "net/ipv4/ip_forward",
        )
    ] == ["net", "ipc", "ipc", "ipc", "ipc", "ipc", "", "", "", "net"]
    assert kube.normalize_sysctl_name("net/ipv4/conf/eth0.100/forwarding") == "net.ipv4.conf.eth0/100.forwarding"
    assert kube.normalize_sysctl_name("net.ipv4.conf.eth0/100.forwarding") == "net.ipv4.conf.eth0/100.forwarding"
    assert kube.sysctl_path("net.ipv4.conf.eth0/100.forwarding") == "net/ipv4/conf/eth0.100/forwarding"
    assert kube.sysctl_path("net/ipv4/conf/eth0.100/forwarding") == "net/ipv4/conf/eth0.100/forwarding"
    assert kube.sysctl_path("kernel.shm_rmid_forced") == "kernel/shm_rmid_forced"
    assert kube.sysctl_name_errors("net.ipv4.ip_forward") == []
    assert kube.sysctl_name_errors("net.ipv4." + "a" * 250) and kube.sysctl_name_errors("net.-x")


def test_supplementary_groups_in_containerds_order_each_once():
    assert kube.supplementary_groups(3000, 2000, [4000, 3000], "", [50, 60]) == [3000, 50, 60, 2000, 4000]
    assert kube.supplementary_groups(3000, 2000, [4000], "Merge", [50]) == [3000, 50, 2000, 4000]
    assert kube.supplementary_groups(3000, None, [4000], "Strict", [50]) == [3000, 4000]
    assert kube.supplementary_groups(0, None, [], "", []) == [0]


# --- requests, QoS class, pod conditions


def _qos_pod(*resources, init=()):
    from nsbox.model import ContainerSpec, PodSpec, Resources

    return PodSpec(
        name="p",
        containers=[ContainerSpec(f"c{i}", ["true"], resources=Resources(**r)) for i, r in enumerate(resources)],
        init_containers=[ContainerSpec(f"i{i}", ["true"], resources=Resources(**r)) for i, r in enumerate(init)],
    )


def test_container_requests_default_to_the_limits():
    from nsbox.model import Resources

    assert kube.container_requests(Resources()) == (None, None)
    assert kube.container_requests(Resources(cpu_millis=500, memory_bytes=2**20)) == (500, 2**20)
    assert kube.container_requests(Resources(cpu_millis=500, cpu_request_millis=100)) == (100, None)


def test_qos_class_as_the_kubelet_computes_it():
    assert kube.pod_qos_class(_qos_pod({})) == "BestEffort"
    assert kube.pod_qos_class(_qos_pod({"cpu_millis": 0, "memory_bytes": 0})) == "BestEffort"  # zero is unset
    assert kube.pod_qos_class(_qos_pod({"cpu_millis": 500, "memory_bytes": 2**26})) == "Guaranteed"
    assert (
        kube.pod_qos_class(
            _qos_pod(
                {"cpu_millis": 500, "memory_bytes": 2**26, "cpu_request_millis": 500, "memory_request_bytes": 2**26}
            )
        )
        == "Guaranteed"
    )
    # a request below its limit, a missing memory limit, or one container without limits: Burstable
    assert (
        kube.pod_qos_class(_qos_pod({"cpu_millis": 500, "memory_bytes": 2**26, "cpu_request_millis": 100}))
        == "Burstable"
    )
    assert kube.pod_qos_class(_qos_pod({"cpu_millis": 500})) == "Burstable"
    assert kube.pod_qos_class(_qos_pod({"cpu_request_millis": 100})) == "Burstable"
    assert kube.pod_qos_class(_qos_pod({"cpu_millis": 500, "memory_bytes": 2**26}, {})) == "Burstable"
    # init containers count too
    assert (
        kube.pod_qos_class(_qos_pod({"cpu_millis": 500, "memory_bytes": 2**26}, init=[{"memory_request_bytes": 2**20}]))
        == "Burstable"
    )


def _running(name, started, ready=True):
    return {"name": name, "state": {"running": {"startedAt": started}}, "ready": ready, "restartCount": 0}


def _done(name, started, finished, code=0):
    return {
        "name": name,
        "state": {"terminated": {"exitCode": code, "startedAt": started, "finishedAt": finished}},
        "ready": False,
        "restartCount": 0,
    }


def test_pod_conditions_of_a_running_pod_in_the_kubelets_order():
    conds = kube.pod_conditions(
        [_running("a", "2026-01-01T00:00:05Z"), _running("b", "2026-01-01T00:00:07Z")],
        [_done("init", "2026-01-01T00:00:02Z", "2026-01-01T00:00:04Z")],
        created="2026-01-01T00:00:00Z",
        start_time="2026-01-01T00:00:01Z",
        phase="Running",
    )
    assert conds == [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:04Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:07Z"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:07Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]


def test_pod_conditions_name_what_is_not_ready_or_not_initialized():
    waiting = {"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}, "ready": False}
    conds = {
        c["type"]: c
        for c in kube.pod_conditions(
            [waiting, dict(waiting, name="b")],
            [_running("i1", "2026-01-01T00:00:02Z", ready=False)],
            created="2026-01-01T00:00:00Z",
            start_time="2026-01-01T00:00:01Z",
            phase="Pending",
        )
    }
    assert conds["Initialized"] == {
        "type": "Initialized",
        "status": "False",
        "lastTransitionTime": "2026-01-01T00:00:01Z",
        "reason": "ContainersNotInitialized",
        "message": "containers with incomplete status: [i1]",
    }
    assert conds["Ready"]["reason"] == conds["ContainersReady"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [a b]"
    # a container that crashed: not ready since it finished
    crashed = {
        "name": "a",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "ready": False,
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:09Z"}},
    }
    conds = {
        c["type"]: c
        for c in kube.pod_conditions(
            [crashed], created="2026-01-01T00:00:00Z", start_time="2026-01-01T00:00:01Z", phase="Running"
        )
    }
    assert conds["ContainersReady"]["lastTransitionTime"] == "2026-01-01T00:00:09Z"


def test_pod_conditions_of_a_finished_pod_and_of_one_not_started():
    conds = {
        c["type"]: c
        for c in kube.pod_conditions(
            [_done("a", "2026-01-01T00:00:02Z", "2026-01-01T00:00:08Z")],
            created="2026-01-01T00:00:00Z",
            start_time="2026-01-01T00:00:01Z",
            phase="Succeeded",
        )
    }
    assert conds["PodReadyToStartContainers"]["status"] == "False"
    assert conds["PodReadyToStartContainers"]["lastTransitionTime"] == "2026-01-01T00:00:08Z"
    assert conds["Ready"]["reason"] == "PodCompleted" and "message" not in conds["Ready"]
    conds = {
        c["type"]: c
        for c in kube.pod_conditions([{"name": "a", "state": {"waiting": {}}}], created="2026-01-01T00:00:00Z")
    }
    assert conds["PodReadyToStartContainers"] == {
        "type": "PodReadyToStartContainers",
        "status": "False",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    assert conds["PodScheduled"]["status"] == "True"
