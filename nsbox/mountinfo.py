"""This process's mounts, as /proc/self/mountinfo lists them (proc(5))."""

from __future__ import annotations

MOUNTINFO = "/proc/self/mountinfo"


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def points_under(path: str) -> list[str]:
    """The mount points at `path` or below it (`path` as the kernel shows it: absolute, no symlinks)."""
    below = path.rstrip("/") + "/"
    with open(MOUNTINFO) as f:
        points = (unescape(line.split(maxsplit=5)[4]) for line in f)
        return [p for p in points if p == path or p.startswith(below)]
