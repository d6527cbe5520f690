"""Quantities (apimachinery: pkg/api/resource): cpu and memory, read exactly and
printed as Kubernetes prints them; the kubelet's cgroup limits from them.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from fractions import Fraction

# --- Quantities (apimachinery: pkg/api/resource) ------------------------------

_QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"  # as Kubernetes prints it
_NUMBER = r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)"  # compiled on first use (start-up)
_EXPONENT = r"[eE]([+-]?\d{1,3})"
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
    m = re.fullmatch(_NUMBER, text)
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
            e = re.fullmatch(_EXPONENT, suffix)
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
