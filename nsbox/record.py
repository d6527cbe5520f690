"""Plain data classes for the pod model, without the `dataclasses` module.

`import dataclasses` brings in inspect, ast, dis and tokenize, and making each
class compiles generated code: ≈ 25 ms of every CLI start and ≈ 0.5 MB in
every watcher (bench/results/2026-11-26-profile.md). A class written as a
dataclass would be — annotated fields in order, a default after `=`, and
`field(list)` for a default made fresh for each instance — gets from
`@record` an `__init__` (positional or keyword), `__repr__` and `__eq__`;
`as_dict` turns records into plain dicts and lists, as `dataclasses.asdict`.
"""

from __future__ import annotations

_REQUIRED = object()


class field:
    """A default made fresh for each instance: `labels: dict[str, str] = field(dict)`."""

    __slots__ = ("factory",)

    def __init__(self, factory):
        self.factory = factory


def record(cls):
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = tuple(cls.__dict__.get(n, _REQUIRED) for n in names)
    for n in names:                       # the defaults live in `defaults`, not on the class
        if n in cls.__dict__:
            delattr(cls, n)
    known = frozenset(names)

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, {len(args)} given")
        unknown = kwargs.keys() - known
        if unknown:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        for i, (name, default) in enumerate(zip(names, defaults)):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs[name]
            elif default is _REQUIRED:
                raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
            elif type(default) is field:
                value = default.factory()
            else:
                value = default
            setattr(self, name, value)

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
    cls.__hash__ = None                   # mutable, compared by value: not hashable (as a dataclass)
    return cls


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
