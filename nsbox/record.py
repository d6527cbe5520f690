"""Plain data classes for the pod model, without the `dataclasses` module.

`import dataclasses` brings in inspect, ast, dis and tokenize, and making each
class compiles generated code: ≈ 25 ms of every CLI start and ≈ 0.5 MB in
every watcher (bench/results/2026-11-26-profile.md). A class written as a
dataclass would be — annotated fields in order, a default after `=`, and
`field(factory=list)` for a default made fresh for each instance — gets from
`@record` an `__init__` (positional or keyword), `__repr__` and `__eq__`;
`as_dict` turns records into plain dicts and lists, as `dataclasses.asdict`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from typing_extensions import dataclass_transform

    _T = TypeVar("_T")

_REQUIRED = object()


class _Field:
    """A default made fresh for each instance: `labels: dict[str, str] = field(factory=dict)`."""

    __slots__ = ("factory",)

    def __init__(self, factory):
        self.factory = factory


def _record(cls):
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = tuple(cls.__dict__.get(n, _REQUIRED) for n in names)
    for n in names:  # the defaults live in `defaults`, not on the class
        if n in cls.__dict__:
            delattr(cls, n)
    known = frozenset(names)
    required = [n for n, d in zip(names, defaults) if d is _REQUIRED]
    factories = [(n, d.factory) for n, d in zip(names, defaults) if type(d) is _Field]
    plain = {n: d for n, d in zip(names, defaults) if d is not _REQUIRED and type(d) is not _Field}

    def __init__(self, *args, **kwargs):
        if args:
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, {len(args)} given")
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
                kwargs[name] = value
        if not known.issuperset(kwargs):
            unknown = sorted(kwargs.keys() - known)[0]
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unknown!r}")
        for name in required:
            if name not in kwargs:
                raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
        values = dict(plain)
        for name, make in factories:
            if name not in kwargs:
                values[name] = make()
        values.update(kwargs)
        self.__dict__.update(values)

    def __repr__(self):
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{cls.__name__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    cls.__record_fields__ = names
    cls.__init__ = __init__
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    cls.__hash__ = None  # mutable, compared by value: not hashable (as a dataclass)
    return cls


if TYPE_CHECKING:
    # What `record` and `field` are to type checkers (PEP 681): a dataclass-like
    # decorator, and a field specifier whose `factory` they see as a default only
    # when given by keyword.
    def field(*, factory: Callable[[], _T]) -> _T: ...

    @dataclass_transform(eq_default=True, field_specifiers=(field,))
    def record(cls: type[_T]) -> type[_T]: ...
else:
    field = _Field
    record = _record


def as_dict(value):
    """Records, lists, tuples and dicts of them as plain values, recursively (copies)."""
    fields = getattr(type(value), "__record_fields__", None)
    if fields is not None:
        return {n: as_dict(getattr(value, n)) for n in fields}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, tuple):
        return tuple(as_dict(v) for v in value)
    if isinstance(value, dict):
        return {as_dict(k): as_dict(v) for k, v in value.items()}
    return value
