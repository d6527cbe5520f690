"""Container logs in the CRI format the kubelet reads.

Each line is `<RFC3339Nano timestamp> <stream> <tag> <content>`, stream
`stdout` or `stderr`, tag `F` for a full line or `P` for a partial one (a line
longer than the writer's buffer, or output that ended without a newline).
This is the format of containerd and CRI-O logs (kubelet `pkg/kubelet/kuberuntime/logs`).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO


MAX_LINE = 16 * 1024  # a longer line is split into P records, as CRI runtimes do


def rfc3339_nano(t_ns: int) -> str:
    sec, nsec = divmod(t_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{nsec:09d}Z"


class StreamWriter:
    """Turns the raw bytes of one stream into CRI records appended to a log file."""

    def __init__(self, fd: int, stream: str):
        self.fd = fd  # shared by the stdout and stderr writers of a container
        self.stream = stream.encode()
        self.pending = b""

    def feed(self, data: bytes) -> None:
        buf = self.pending + data
        stamp = rfc3339_nano(time.time_ns()).encode()
        out = []
        start, end = 0, len(buf)
        while True:
            nl = buf.find(b"\n", start, start + MAX_LINE + 1)
            if nl >= 0:  # a full line of at most MAX_LINE bytes
                out.append(b"%s %s F %s\n" % (stamp, self.stream, buf[start:nl]))
                start = nl + 1
            elif end - start > MAX_LINE:  # no newline in reach: a partial record
                out.append(b"%s %s P %s\n" % (stamp, self.stream, buf[start : start + MAX_LINE]))
                start += MAX_LINE
            else:
                break
        self.pending = buf[start:]
        if out:
            os.write(self.fd, b"".join(out))

    def flush(self) -> None:
        """Write what is pending as a partial record (at the end of the stream, or before the
        watcher hands the stream to nsbox-idle): `logs` joins it with what follows."""
        if self.pending:
            stamp = rfc3339_nano(time.time_ns()).encode()
            os.write(self.fd, b"%s %s P %s\n" % (stamp, self.stream, self.pending))
            self.pending = b""


def parse_line(line: bytes) -> tuple[str, str, bool, bytes] | None:
    """(timestamp, stream, full, content) of one record, or None if it is not one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2] == b"F", content


def render(records: Iterator[tuple[str, str, bool, bytes]], timestamps: bool) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes to print): partial records are joined with what follows, as kubectl does."""
    for stamp, stream, full, content in records:
        prefix = (stamp.encode() + b" ") if timestamps else b""
        yield stream, prefix + content + (b"\n" if full else b"")


def read_records(path: str, tail: int | None = None) -> list[tuple[str, str, bool, bytes]]:
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")  # not splitlines(): a record may hold a \r
    except FileNotFoundError:
        return []
    records = [r for r in (parse_line(line) for line in lines) if r]
    if tail is not None:
        records = records[-tail:] if tail > 0 else []
    return records


def stamp_ns(stamp: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (a record's, or `--since-time`'s),
    with or without a fraction, "Z" or a numeric offset; None if it is not one."""
    import calendar
    import re

    m = re.fullmatch(
        r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))", stamp
    )
    if not m:
        return None
    try:
        seconds = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return seconds * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int | None:
    """Nanoseconds of a Go duration ("5s", "2m", "1h30m", "1.5h", "300ms"), as kubectl's
    --since takes it (time.ParseDuration); None if it is not one."""
    import re

    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    parts = re.findall(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", body)
    if not body or "".join(a + u for a, u in parts) != body:
        return None
    total = sum(round(float(a) * _GO_UNITS[u]) for a, u in parts)
    return -total if text.startswith("-") else total


def since(records: list[tuple[str, str, bool, bytes]], since_ns: int) -> list[tuple[str, str, bool, bytes]]:
    """The records written at or after `since_ns` (the kubelet skips those before it, after
    --tail has chosen the last lines: ReadLogs)."""
    return [r for r in records if (stamp_ns(r[0]) or 0) >= since_ns]


class Follower:
    """Reads records appended to a log file since the last call (for `logs -f` and `run -a`).

    The file stays open once found, so what a container wrote can still be read
    after its pod was removed (`run --rm -a`).
    """

    def __init__(self, path: str, offset: int = 0, file: BinaryIO | None = None):
        self.path = path
        self.offset = offset
        self.file = file
        self.rest = b""

    def poll(self) -> list[tuple[str, str, bool, bytes]]:
        if self.file is None:
            try:
                self.file = open(self.path, "rb")
            except FileNotFoundError:
                return []
            self.file.seek(self.offset)
        data = self.rest + self.file.read()
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return [r for r in (parse_line(line) for line in data[:cut].split(b"\n")) if r]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
