"""Kubernetes rules nsbox follows, in one place.

Every rule here is a pure function or a constant, with a line saying where it
comes from: apimachinery validation, the API server, the kubelet, kubectl, or
the container runtime (containerd / moby). Nothing here touches the system,
and only `re` is imported: this module is on the CLI's start-up path.

Container and pod statuses are taken as plain dicts in the shape of the
Kubernetes `containerStatuses` entries, so the watcher can store them as they
are and `get -o json` can print them as they are:

    {"name": "app",
     "state": {"running": {"startedAt": "..."}}
            | {"waiting": {"reason": "CrashLoopBackOff", "message": "..."}}
            | {"terminated": {"exitCode": 137, "signal": 9, "reason": "Error",
                              "startedAt": "...", "finishedAt": "..."}},
     "lastState": {} | {"terminated": {...}},
     "restartCount": 0,
     "ready": True}
"""

from __future__ import annotations

import re
import time

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from fractions import Fraction
    from typing import Any

# --- Names (apimachinery: pkg/util/validation) --------------------------------

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE)

DNS1123_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'my-name',  or '123-abc', regex used for validation is '" + _DNS1123_LABEL + "')"
)
DNS1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is '" + _DNS1123_SUBDOMAIN + "')"
)
_QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '" + _QUALIFIED_NAME + "')"
)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character "
    "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '" + _LABEL_VALUE + "')"
)


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label_errors(value: str) -> list[str]:
    """Every problem with `value` as a DNS-1123 label (apimachinery IsDNS1123Label)."""
    errors = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        errors.append(DNS1123_LABEL_MESSAGE)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Every problem with `value` as a DNS-1123 subdomain (apimachinery IsDNS1123Subdomain)."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(DNS1123_SUBDOMAIN_MESSAGE)
    return errors


def validate_dns1123_label(value: str) -> str | None:
    """None if valid, else the Kubernetes message(s), joined by "; "."""
    return "; ".join(dns1123_label_errors(value)) or None


def validate_dns1123_subdomain(value: str) -> str | None:
    """None if valid, else the Kubernetes message(s), joined by "; "."""
    return "; ".join(dns1123_subdomain_errors(value)) or None


def validate_pod_name(name: str) -> str | None:
    """Pod names are DNS-1123 subdomains (apimachinery ValidatePodName).

    Container, volume and namespace names are DNS-1123 labels instead."""
    return validate_dns1123_subdomain(name)


def qualified_name_errors(value: str) -> list[str]:
    """Problems with a label or annotation key: [prefix/]name (apimachinery IsQualifiedName)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errors = ["prefix part " + e for e in dns1123_subdomain_errors(prefix)]
        if errors:
            return errors
    else:
        return [
            "a qualified name "
            + _QUALIFIED_NAME_MESSAGE
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    errors = []
    if len(name) > QUALIFIED_NAME_MAX:
        errors.append("name part " + _max_len(QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errors.append("name part " + _QUALIFIED_NAME_MESSAGE)
    return errors


def label_value_errors(value: str) -> list[str]:
    """Problems with a label value (apimachinery IsValidLabelValue)."""
    errors = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(_max_len(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_LABEL_VALUE_MESSAGE)
    return errors


def env_var_name_error(name: str) -> str | None:
    """Environment variable names: any printable ASCII but '=' (Kubernetes ≥ 1.32,
    RelaxedEnvironmentVariableValidation)."""
    if name and "=" not in name and all(" " <= ch <= "~" for ch in name):
        return None
    return "a valid environment variable name must consist only of printable ASCII characters other than '='"


_CONFIG_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")


def _dot_errors(key: str) -> list[str]:
    """What keys that become file names may not be: ".", "..", or start with ".."."""
    if key in (".", ".."):
        return [f"must not be '{key}'"]
    return ["must not start with '..'"] if key.startswith("..") else []


def config_key_errors(key: str) -> list[str]:
    """A key of a ConfigMap or Secret (apimachinery IsConfigMapKey): also a file name."""
    errors = []
    if len(key) > 253:
        errors.append(_max_len(253))
    if not _CONFIG_KEY_RE.fullmatch(key):
        errors.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')"
        )
    return errors + _dot_errors(key)


_ENV_FILE_KEY_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def env_file_key_errors(key: str) -> list[str]:
    """A key of kubectl's --from-env-file (apimachinery IsEnvVarName, the strict rule kubectl
    keeps): letters, digits, '_', '-', '.', not starting with a digit, nor with '..'."""
    errors = []
    if not _ENV_FILE_KEY_RE.fullmatch(key):
        errors.append(
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or "
            "'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
        )
    return errors + _dot_errors(key)


# --- Quantities (apimachinery: pkg/api/resource) ------------------------------

_QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"  # as Kubernetes prints it
_NUMBER_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)")
_EXPONENT_RE = re.compile(r"[eE]([+-]?\d{1,3})")
_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}  # powers of 10
_INT64_MAX = 2**63 - 1


class QuantityError(ValueError):
    """A malformed or out-of-range quantity; `reason` is the bare Kubernetes wording."""

    def __init__(self, quantity: object, reason: str):
        super().__init__(f"invalid quantity {quantity!r}: {reason}")
        self.quantity = quantity
        self.reason = reason


def _quantity_fraction(q: str | int | float) -> tuple[int, int]:
    """A quantity as an exact fraction (numerator, denominator)."""
    if isinstance(q, bool) or not isinstance(q, (str, int, float)):
        raise QuantityError(q, "must be a string or a number")
    if isinstance(q, int):
        return q, 1
    text = repr(q) if isinstance(q, float) else q
    m = _NUMBER_RE.fullmatch(text)
    if not m:
        raise QuantityError(q, f"quantities must match the regular expression '{_QUANTITY_REGEX}'")
    sign, digits, suffix = m.groups()
    whole, _, frac = digits.partition(".")
    num = int((whole or "0") + frac) * (-1 if sign == "-" else 1)
    den = 10 ** len(frac)
    if suffix in _BINARY_SUFFIXES:
        num *= 1024 ** _BINARY_SUFFIXES[suffix]
    else:
        if suffix in _DECIMAL_SUFFIXES:
            power = _DECIMAL_SUFFIXES[suffix]
        else:
            e = _EXPONENT_RE.fullmatch(suffix)
            if not e:
                raise QuantityError(q, "unable to parse quantity's suffix")
            power = int(e.group(1))
        if power >= 0:
            num *= 10**power
        else:
            den *= 10**-power
    return num, den


def _scaled(q: str | int | float, scale: int) -> int:
    # Kubernetes rounds up when a quantity is read at a coarser scale (Quantity.ScaledValue).
    num, den = _quantity_fraction(q)
    if num < 0:
        raise QuantityError(q, "must be greater than or equal to 0")
    value = -((-num * scale) // den)
    if value > _INT64_MAX:
        raise QuantityError(q, "is too large")
    return value


def quantity_value(q: str | int | float) -> Fraction:
    """A non-negative quantity's exact value: "1Mi" → 1048576, "500m" → 1/2 (a divisor, a limit)."""
    num, den = _quantity_fraction(q)
    if num < 0:
        raise QuantityError(q, "must be greater than or equal to 0")
    from fractions import Fraction

    return Fraction(num, den)


def parse_cpu(q: str | int | float) -> int:
    """A CPU quantity in millicores: "500m"→500, "1"→1000, "0.5"→500, 2→2000, "100u"→1."""
    return _scaled(q, 1000)


def parse_memory(q: str | int) -> int:
    """A memory quantity in bytes: "128Mi", "1G", "1e3", "100k", "512"."""
    return _scaled(q, 1)


def format_quantity_bytes(n: int) -> str:
    """Bytes as the shortest exact quantity: 134217728→"128Mi", 10**9→"1G", 1500→"1500"."""
    if n == 0:
        return "0"
    for suffix, power in sorted(_BINARY_SUFFIXES.items(), key=lambda kv: -kv[1]):
        if n % (1024**power) == 0:
            return f"{n // 1024**power}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        unit = 10 ** _DECIMAL_SUFFIXES[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def format_cpu(millis: int) -> str:
    """Millicores as Kubernetes prints them: 2000→"2", 500→"500m"."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


# kubelet (cm/helpers_linux.go): CFS period 100 ms; the quota never goes below 1 ms.
CPU_PERIOD_US = 100_000
CPU_MIN_QUOTA_US = 1_000


def cpu_quota_us(millis: int, period_us: int = CPU_PERIOD_US) -> int:
    """cpu.max quota for a limit of `millis` millicores (kubelet milliCPUToQuota)."""
    return max(millis * period_us // 1000, CPU_MIN_QUOTA_US)


def pod_resource_limit(containers: list[int | None], init_containers: Sequence[int | None] = ()) -> int | None:
    """The pod cgroup's limit for one resource (kubelet ResourceConfigForPod).

    Only when every container, init containers included, declares the limit:
    then max(sum of the app containers, largest init container) — init
    containers run one at a time, before the others. Otherwise None (no limit).
    """
    values = list(containers) + list(init_containers)
    if not values or any(v is None for v in values):
        return None
    return max([sum(containers)] + list(init_containers))  # type: ignore[arg-type, type-var]  # no None: checked above


# --- Termination (kubectl delete, API server, kubelet) ------------------------

DEFAULT_GRACE_PERIOD = 30  # API server default for terminationGracePeriodSeconds
KILL_MIN_GAP = 2  # kubelet minimumGracePeriodInSeconds: SIGTERM → SIGKILL never less


def effective_grace_period(flag: int | None, force: bool, pod_value: int | None) -> int:
    """The grace period G a deletion uses (docs/lifecycle.md, Termination 1 and 7).

    - `--grace-period` wins when given and >= 0 (kubectl treats a negative
      flag as "not given", its default being -1);
    - else the pod's terminationGracePeriodSeconds (a negative one counts as
      1, as the API server stores it), else 30;
    - `--grace-period=0` without `--force` means 1 (kubectl delete);
    - with `--force` the result is always 0: the pod leaves the state at once
      and its processes get SIGTERM, then SIGKILL `KILL_MIN_GAP` s later
      (which is exactly `sigkill_at(0, t)`).
    """
    if force:
        return 0
    if flag is not None and flag >= 0:
        return 1 if flag == 0 else flag
    if pod_value is None:
        return DEFAULT_GRACE_PERIOD
    return 1 if pod_value < 0 else pod_value


def sigkill_at(grace_deadline: float, sigterm_sent: float) -> float:
    """When the remaining processes get SIGKILL (docs/lifecycle.md, Termination 4; the kubelet): at the end
    of the grace period, but never sooner than KILL_MIN_GAP s after SIGTERM."""
    return max(grace_deadline, sigterm_sent + KILL_MIN_GAP)


# --- Restarts (kubelet) -------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
BACKOFF_BASE = 10  # kubelet: initial crash-loop back-off
BACKOFF_MAX = 300  # kubelet: MaxContainerBackOff
BACKOFF_RESET_AFTER = 600  # kubelet: back-off forgotten after 2 × max without a new failure


def restart_backoff(restart_count: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """Seconds to wait, after a container exits, before restarting it.

    `restart_count` is the container's restartCount when it exited (the
    number of restarts since the back-off was last reset). As the kubelet
    does (kuberuntime doBackOff + flowcontrol.Backoff), the first restart is
    immediate and the back-off starts from there: 0, 10, 20, 40, … 300, 300.
    The watcher resets the count it passes here after a container has run
    BACKOFF_RESET_AFTER seconds.
    """
    if restart_count <= 0:
        return 0.0
    # Cap the exponent: 2**1000 would be a float overflow long after reaching `cap`.
    return float(min(base * 2 ** min(restart_count - 1, 64), cap))


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a regular container that exited is restarted (kubelet ShouldContainerBeRestarted)."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    if policy == "Never":
        return False
    raise ValueError(f'unknown restart policy "{policy}"')


def should_restart_init(policy: str, exit_code: int) -> bool:
    """Init containers: a success moves on; a failure is retried unless the pod's
    policy is Never, in which case the pod fails (kubelet)."""
    return exit_code != 0 and policy != "Never"


def exit_code_for_signal(signal: int) -> int:
    """A container killed by signal N reports exitCode 128+N (runc / containerd)."""
    return 128 + signal


def rfc3339(seconds_from_now: float = 0) -> str:
    """A metav1.Time as the API server writes it (UTC, whole seconds): creation, start,
    finish and event times; deletionTimestamp is now + the grace period."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


def epoch(stamp: str) -> float:
    """Seconds since the epoch of a time that rfc3339() wrote ("2026-11-26T23:24:58Z").

    Sliced, not time.strptime'd: `get pods` reads one per pod, and strptime costs tens of µs.
    """
    import calendar

    return calendar.timegm(
        (int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]))
    )


def terminated_reason(exit_code: int, oom_killed: bool = False) -> str:
    """The reason of a terminated container (containerd CRI): OOMKilled, Completed or Error."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


# --- Pod phase (kubelet getPhase) ---------------------------------------------


def _state(status: dict) -> tuple[str, dict]:
    """("running" | "waiting" | "terminated" | "", details) of a container status."""
    state = status.get("state") or {}
    for key in ("running", "terminated", "waiting"):
        if key in state and state[key] is not None:
            return key, state[key] or {}
    return "", {}


def _last_terminated(status: dict) -> dict | None:
    return (status.get("lastState") or {}).get("terminated")


def pod_phase(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    restart_policy: str = "Always",
    *,
    deadline_exceeded: bool = False,
    watcher_lost: bool = False,
) -> str:
    """The pod phase (docs/lifecycle.md, "Phases") from its container statuses, as the kubelet's getPhase.

    `containers` and `init_containers` hold one status dict per container of
    the spec, in spec order (module docstring for the shape); a container not
    created yet has {"state": {"waiting": {"reason": "ContainerCreating"}}}
    or no state at all.

    - Unknown: the watcher is lost, so nothing can be trusted;
    - Failed: activeDeadlineSeconds exceeded, or an init container failed
      under restartPolicy Never;
    - Pending: an init container has not succeeded yet, or a container has
      never run;
    - Running: a container runs, or all have stopped but will be restarted;
    - Succeeded / Failed: all stopped for good — Succeeded when all exited 0.
    A pod without containers (`pod create`) is Running: its sandbox is up and
    there is nothing to wait for.
    """
    if watcher_lost:
        return "Unknown"
    if deadline_exceeded:
        return "Failed"

    init_pending = init_failed = 0
    for status in init_containers:
        kind, details = _state(status)
        if kind == "terminated":
            if details.get("exitCode", 0) != 0:
                init_failed += 1
        elif kind == "waiting" and (last := _last_terminated(status)) is not None:
            if last.get("exitCode", 0) != 0:
                init_failed += 1
            else:
                init_pending += 1
        else:
            init_pending += 1
    if init_failed and restart_policy == "Never":
        return "Failed"
    if init_pending or init_failed:
        return "Pending"

    running = stopped = succeeded = waiting = 0
    for status in containers:
        kind, details = _state(status)
        if kind == "running":
            running += 1
        elif kind == "terminated":
            stopped += 1
            succeeded += details.get("exitCode", 0) == 0
        elif kind == "waiting" and _last_terminated(status) is not None:
            # Waiting to be restarted (CrashLoopBackOff): it has run and stopped.
            stopped += 1
        else:
            waiting += 1
    if not containers:
        return "Running"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


# --- The STATUS column (kubectl get pods: printPod) ---------------------------


def pod_status_text(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    *,
    phase: str = "Pending",
    reason: str = "",
    deletion: bool = False,
    watcher_lost: bool = False,
    init_total: int | None = None,
) -> str:
    """What `kubectl get pods` shows in STATUS.

    `containers` / `init_containers`: status dicts (module docstring) in spec
    order; `phase`: the pod phase; `reason`: the pod's status.reason
    (`DeadlineExceeded`, `Evicted`, …); `deletion`: a deletionTimestamp is
    set; `watcher_lost`: nothing watches the pod any more; `init_total`: the
    number of init containers in the spec (default: len(init_containers)).

    As kubectl: the phase, or the pod's reason; then the first init container
    that has not succeeded (`Init:N/M`, `Init:Error`, `Init:CrashLoopBackOff`,
    `Init:ExitCode:N`); else the first container with a waiting or
    terminated reason (`ContainerCreating`, `CrashLoopBackOff`, `Completed`,
    `Error`, `OOMKilled`, `ExitCode:N`, `Signal:N`) — with `Completed` shown
    as `Running` (or `NotReady`) while another container still runs; then
    `Terminating` for a pod being deleted that has not finished.
    Two nsbox choices: a lost watcher shows `Unknown` (kubectl shows that for
    a pod on an unreachable node), and a Failed pod with a reason (Evicted,
    DeadlineExceeded) shows that reason rather than its containers' ones.
    """
    if watcher_lost:
        return "Unknown"
    text = reason or phase
    total = len(init_containers) if init_total is None else init_total

    initializing = False
    for i, status in enumerate(init_containers):
        kind, details = _state(status)
        if kind == "terminated" and details.get("exitCode", 0) == 0:
            continue
        initializing = True
        if kind == "terminated":
            if details.get("reason"):
                text = "Init:" + details["reason"]
            elif details.get("signal"):
                text = f"Init:Signal:{details['signal']}"
            else:
                text = f"Init:ExitCode:{details.get('exitCode', 0)}"
        elif kind == "waiting" and details.get("reason") and details["reason"] != "PodInitializing":
            text = "Init:" + details["reason"]
        else:
            text = f"Init:{i}/{total}"
        break
    if not initializing and total > len(init_containers):
        # Init containers in the spec have no status yet: the next one is pending.
        initializing = True
        text = f"Init:{len(init_containers)}/{total}"

    if not initializing and not (phase == "Failed" and reason):
        has_running = False
        # kubectl walks backwards so that the first container's reason wins.
        for status in reversed(containers):
            kind, details = _state(status)
            if kind == "waiting" and details.get("reason"):
                text = details["reason"]
            elif kind == "terminated" and details.get("reason"):
                text = details["reason"]
            elif kind == "terminated":
                if details.get("signal"):
                    text = f"Signal:{details['signal']}"
                else:
                    text = f"ExitCode:{details.get('exitCode', 0)}"
            elif kind == "running" and status.get("ready"):
                has_running = True
        if text == "Completed" and has_running:
            text = "Running" if all(s.get("ready") for s in containers) else "NotReady"

    if deletion and phase not in ("Succeeded", "Failed"):
        text = "Terminating"
    return text


def pod_ready_text(containers: list[dict]) -> str:
    """The READY column: ready containers / containers (kubectl)."""
    ready = sum(1 for s in containers if s.get("ready") and _state(s)[0] == "running")
    return f"{ready}/{len(containers)}"


def pod_restart_count(containers: list[dict], init_containers: Sequence[dict] = ()) -> int:
    """The RESTARTS column (kubectl): init containers' restarts while the pod
    initializes, the app containers' once it has."""
    initializing = any(
        not (_state(s)[0] == "terminated" and _state(s)[1].get("exitCode", 0) == 0) for s in init_containers
    )
    chosen = init_containers if initializing else containers
    return sum(int(s.get("restartCount", 0)) for s in chosen)


# --- $(VAR) references (kubelet: third_party/forked/golang/expansion) ---------


def expand_env_references(text: str, env: dict[str, str]) -> str:
    """Expand `$(NAME)` in an env value, command or args as the kubelet does.

    `$(NAME)` becomes env[NAME] when NAME is defined and stays as written
    otherwise; `$$` is a literal `$` (so `$$(NAME)` is `$(NAME)`); any other
    `$` is kept. Env values see only the variables defined before them;
    command and args see the whole environment.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env[name] if name in env else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# --- Capabilities (linux/capability.h; default set: containerd / moby) --------

# The runtime default set (containerd oci.defaultUnixCaps, moby caps.DefaultCapabilities):
# what an unprivileged container keeps (docs/security.md §2).
DEFAULT_CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)

# Every capability of linux/capability.h, by number (CAP_LAST_CAP = 40 since Linux 5.9).
CAPABILITY_NUMBERS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        )
    )
}


def normalize_capability(name: str) -> str:
    """ "cap_net_admin" / "CAP_NET_ADMIN" / "NET_ADMIN" → "NET_ADMIN"; "all" → "ALL".

    Kubernetes passes names through and runtimes accept both spellings;
    nsbox rejects unknown names up front: ValueError('unknown capability "X"')."""
    canonical = name.strip().upper()
    if canonical.startswith("CAP_"):
        canonical = canonical[4:]
    if canonical == "ALL" or canonical in CAPABILITY_NUMBERS:
        return canonical
    raise ValueError(f'unknown capability "{name}"')


def effective_capabilities(privileged: bool, add: Sequence[str] = (), drop: Sequence[str] = ()) -> frozenset[str]:
    """The bounding set of a container (moby TweakCapabilities, containerd CRI).

    Privileged: every capability. Otherwise start from all (add contains
    ALL), none (drop contains ALL) or the default set; remove the dropped
    ones, then add the added ones — a capability both added and dropped is
    kept. Names must already be normalized."""
    if privileged:
        return frozenset(CAPABILITY_NUMBERS)
    if "ALL" in add:
        caps = set(CAPABILITY_NUMBERS)
    elif "ALL" in drop:
        caps = set()
    else:
        caps = set(DEFAULT_CAPABILITIES)
    caps.difference_update(c for c in drop if c != "ALL")
    caps.update(c for c in add if c != "ALL")
    return frozenset(caps)


# --- Hostname, /etc/hosts (kubelet: kubelet_pods.go) ---------------------------

HOSTNAME_MAX = 63  # the kernel's UTS name: 64 bytes with the terminating NUL


def truncate_pod_hostname(hostname: str) -> str:
    """kubelet truncatePodHostnameIfNeeded: a hostname longer than 63 characters
    is cut to 63, then trailing '-' and '.' are trimmed (a shorter one is kept as is)."""
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    return hostname[:HOSTNAME_MAX].rstrip("-.")


MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"


def managed_hosts_file(ip: str, hostname: str, aliases: Sequence = ()) -> str:
    """kubelet managedHostsFileContent: the /etc/hosts of a pod with its own network.

    `aliases` are spec.hostAliases (objects with .ip and .hostnames). A pod
    without an IP (nsbox's loopback network) maps its hostname to 127.0.1.1,
    as Debian's installer does for a machine without a fixed address."""
    lines = [
        MANAGED_HOSTS_HEADER,
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::0\tip6-localnet\n",
        "fe00::0\tip6-mcastprefix\n",
        "fe00::1\tip6-allnodes\n",
        "fe00::2\tip6-allrouters\n",
        f"{ip or '127.0.1.1'}\t{hostname}\n",
    ]
    return "".join(lines) + host_aliases_entries(aliases)


def host_network_hosts_file(host_content: str, aliases: Sequence = ()) -> str:
    """kubelet nodeHostsFileContent: a hostNetwork pod's /etc/hosts is the node's, copied, with a header."""
    return MANAGED_HOSTS_HEADER_HOST_NETWORK + host_content + host_aliases_entries(aliases)


def host_aliases_entries(aliases: Sequence) -> str:
    """kubelet hostsEntriesFromHostAliases: a blank line, a comment, then `IP<TAB>name<TAB>name` per alias."""
    if not aliases:
        return ""
    return "\n# Entries added by HostAliases.\n" + "".join(f"{a.ip}\t" + "\t".join(a.hostnames) + "\n" for a in aliases)


# --- Sysctls (apimachinery validation; component-helpers node/util/sysctl) ------

SYSCTL_NAME_MAX = 253
_SYSCTL_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_NAME_REGEX = "^(" + _SYSCTL_SEGMENT + r"[\./])*" + _SYSCTL_SEGMENT + "$"
_SYSCTL_NAME_RE = re.compile(SYSCTL_NAME_REGEX)

# The sysctls a pod may set: those the kernel keeps per network or IPC namespace
# (component-helpers GetNamespace). Exact names, then prefixes.
SYSCTL_NAMESPACES = {"kernel.sem": "ipc"}
SYSCTL_NAMESPACE_PREFIXES = {"kernel.shm": "ipc", "kernel.msg": "ipc", "fs.mqueue.": "ipc", "net.": "net"}
NAMESPACED_SYSCTLS_TEXT = "net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"


def sysctl_name_errors(name: str) -> list[str]:
    """apimachinery IsValidSysctlName, with the API server's message (validateSysctls)."""
    if len(name) <= SYSCTL_NAME_MAX and _SYSCTL_NAME_RE.match(name):
        return []
    return [f"must have at most {SYSCTL_NAME_MAX} characters and match regex {SYSCTL_NAME_REGEX}"]


def normalize_sysctl_name(name: str) -> str:
    """component-helpers NormalizeName: a name whose first separator is '/' ("net/ipv4/conf/eth0.100/x")
    has '.' and '/' swapped ("net.ipv4.conf.eth0/100.x"); a name in dot form is kept."""
    first = re.search(r"[./]", name)
    if first is None or first.group() == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def sysctl_namespace(name: str) -> str:
    """ "net", "ipc", or "" for a sysctl the kernel does not keep per namespace."""
    name = normalize_sysctl_name(name)
    if name in SYSCTL_NAMESPACES:
        return SYSCTL_NAMESPACES[name]
    for prefix, ns in SYSCTL_NAMESPACE_PREFIXES.items():
        if name.startswith(prefix):
            return ns
    return ""


def sysctl_path(name: str) -> str:
    """The file under /proc/sys: dots separate, a '/' in the dot form is a dot in the file's name
    (sysctl(8)'s rule: net.ipv4.conf.eth0/100.forwarding is net/ipv4/conf/eth0.100/forwarding)."""
    return "/".join(part.replace("/", ".") for part in normalize_sysctl_name(name).split("."))


# --- Supplementary groups (kubelet determineEffectiveSecurityContext; containerd CRI) --

SUPPLEMENTAL_GROUPS_POLICIES = ("Merge", "Strict")
FS_GROUP_CHANGE_POLICIES = ("Always", "OnRootMismatch")


def supplementary_groups(
    gid: int, fs_group: int | None, supplemental_groups: list[int], policy: str, image_groups: list[int]
) -> list[int]:
    """The groups of every process of a container, in containerd's order, each once.

    The primary gid; with policy Merge (the default, "") the groups that list
    the container user's name in the container's /etc/group (`image_groups`,
    containerd WithAdditionalGIDs); then what the kubelet passes: fsGroup, then
    supplementalGroups. Strict leaves out the /etc/group ones."""
    out = [gid]
    if policy != "Strict":
        out += image_groups
    if fs_group is not None:
        out.append(fs_group)
    out += supplemental_groups
    return list(dict.fromkeys(out))


# --- Requests, QoS class and pod conditions -------------------------------------


def container_requests(resources: Any) -> tuple[int | None, int | None]:
    """(cpu millicores, memory bytes) requested by a container (a `Resources`), with the
    API server's defaulting: a request left unset while its limit is set is the limit."""
    cpu = resources.cpu_request_millis
    memory = resources.memory_request_bytes
    return (resources.cpu_millis if cpu is None else cpu, resources.memory_bytes if memory is None else memory)


def pod_qos_class(spec: Any) -> str:
    """status.qosClass of a pod (a `PodSpec`), as the kubelet computes it (pkg/apis/core/helper/qos):
    requests and limits of cpu and memory, zero meaning unset, summed over every container
    (init ones too). None at all: BestEffort. Every container limiting both, and the sums of
    requests equal to the sums of limits: Guaranteed. Anything else: Burstable."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in spec.all_containers():
        cpu_request, memory_request = container_requests(c.resources)
        for name, value in (("cpu", cpu_request), ("memory", memory_request)):
            if value:
                requests[name] = requests.get(name, 0) + value
        found = set()
        for name, value in (("cpu", c.resources.cpu_millis), ("memory", c.resources.memory_bytes)):
            if value:
                limits[name] = limits.get(name, 0) + value
                found.add(name)
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(limits[k] == v for k, v in requests.items()):
        return "Guaranteed"
    return "Burstable"


def _latest(stamps: list[str]) -> str:
    stamps = [s for s in stamps if s]
    return max(stamps, key=epoch) if stamps else ""


def _names(statuses: list[dict]) -> str:
    return "[" + " ".join(s["name"] for s in statuses) + "]"  # Go's %s of a []string


def pod_conditions(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    *,
    created: str,
    start_time: str = "",
    phase: str = "Pending",
) -> list[dict]:
    """status.conditions of a pod, in the kubelet's order (pkg/kubelet/status/generate.go):
    PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.

    Statuses are `containerStatuses` entries (with `ready` already decided). nsbox
    records no condition transitions: each lastTransitionTime is the recorded moment
    the condition last changed — the pod's creation (PodScheduled: nothing schedules
    it), its start (its sandbox), the last init container's finish, the last start
    of a container (ready) or the last finish of an unready one — so reads agree."""

    def condition(kind: str, ok: bool, since: str, reason: str = "", message: str = "") -> dict:
        out = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": since or start_time or created}
        if not ok and reason:
            out["reason"] = reason
        if not ok and message:
            out["message"] = message
        return out

    def finished(s: dict) -> str:
        state, detail = _state(s)
        if state == "terminated":
            return detail.get("finishedAt", "")
        return (_last_terminated(s) or {}).get("finishedAt", "")

    ended = phase in ("Succeeded", "Failed")
    sandbox = bool(start_time) and not ended
    sandbox_since = (
        start_time
        if sandbox
        else (_latest([finished(s) for s in [*init_containers, *containers]]) if start_time else created)
    )

    incomplete = [
        s for s in init_containers if not (_state(s)[0] == "terminated" and _state(s)[1].get("exitCode") == 0)
    ]
    initialized = condition(
        "Initialized",
        not incomplete,
        _latest([finished(s) for s in init_containers]) if not incomplete else "",
        "ContainersNotInitialized",
        f"containers with incomplete status: {_names(incomplete)}",
    )

    unready = [s for s in containers if not s.get("ready")]
    if not unready and containers:
        since = _latest([_state(s)[1].get("startedAt", "") for s in containers])
        reason = message = ""
    else:
        since = _latest([finished(s) for s in unready])
        reason = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
        message = "" if phase == "Succeeded" else f"containers with unready status: {_names(unready)}"
    ready = not unready and bool(containers)
    return [
        condition("PodReadyToStartContainers", sandbox, sandbox_since),
        initialized,
        condition("Ready", ready, since, reason, message),
        condition("ContainersReady", ready, since, reason, message),
        condition("PodScheduled", True, created),
    ]
