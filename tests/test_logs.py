"""CRI log records (nsbox.logs): pure logic, no pods."""

from __future__ import annotations

import os
import re

from nsbox import logs
from nsbox.logs import MAX_LINE

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def records(chunks: list[bytes], flush: bool = False) -> list[tuple[bytes, bytes, bytes]]:
    """(stream, tag, content) of what a StreamWriter writes for `chunks`, timestamps checked."""
    r, w = os.pipe()
    try:
        writer = logs.StreamWriter(w, "stdout")
        for chunk in chunks:
            writer.feed(chunk)
        if flush:
            writer.flush()
        os.close(w)
        out = b""
        while data := os.read(r, 1 << 20):
            out += data
    finally:
        os.close(r)
    result = []
    for line in out.splitlines():
        stamp, stream, tag, content = line.split(b" ", 3)
        assert STAMP.match(stamp), stamp
        result.append((stream, tag, content))
    return result


def test_full_lines_are_f_records_and_the_rest_waits():
    assert records([b"one\ntwo\n\nthr", b"ee\n"]) == [
        (b"stdout", b"F", b"one"),
        (b"stdout", b"F", b"two"),
        (b"stdout", b"F", b""),
        (b"stdout", b"F", b"three"),
    ]


def test_a_line_longer_than_max_line_is_split_into_partial_records():
    line = b"x" * (2 * MAX_LINE + 5)
    assert records([line + b"\n"]) == [
        (b"stdout", b"P", b"x" * MAX_LINE),
        (b"stdout", b"P", b"x" * MAX_LINE),
        (b"stdout", b"F", b"x" * 5),
    ]


def test_a_line_of_exactly_max_line_is_one_full_record():
    assert records([b"y" * MAX_LINE + b"\n"]) == [(b"stdout", b"F", b"y" * MAX_LINE)]


def test_lines_after_a_long_line_are_written_at_once_not_held_back():
    # They used to wait in the buffer for the next read when a long line came first.
    assert records([b"z" * (MAX_LINE + 10) + b"\nshort\nend\n"]) == [
        (b"stdout", b"P", b"z" * MAX_LINE),
        (b"stdout", b"F", b"z" * 10),
        (b"stdout", b"F", b"short"),
        (b"stdout", b"F", b"end"),
    ]


def test_flush_writes_what_is_pending_as_one_partial_record():
    assert records([b"done\nno newline"], flush=True) == [(b"stdout", b"F", b"done"), (b"stdout", b"P", b"no newline")]
    assert records([b"all\n"], flush=True) == [(b"stdout", b"F", b"all")]


def test_render_joins_partial_records_with_what_follows():
    recs = [
        logs.parse_line(b"2026-01-01T00:00:00.000000000Z stdout P ab"),
        logs.parse_line(b"2026-01-01T00:00:00.000000001Z stdout F cd\n"),
    ]
    assert b"".join(data for _, data in logs.render(iter(recs), timestamps=False)) == b"abcd\n"


def test_a_carriage_return_stays_inside_its_record(tmp_path):
    # Progress bars write \r; only \n ends a CRI record.
    path = tmp_path / "0.log"
    path.write_bytes(
        b"2026-01-01T00:00:00.000000000Z stdout F 10%\r50%\r100%\n2026-01-01T00:00:00.000000001Z stderr F done\n"
    )
    expected = [
        ("2026-01-01T00:00:00.000000000Z", "stdout", True, b"10%\r50%\r100%"),
        ("2026-01-01T00:00:00.000000001Z", "stderr", True, b"done"),
    ]
    assert logs.read_records(str(path)) == expected
    follower = logs.Follower(str(path))
    try:
        assert follower.poll() == expected
    finally:
        follower.close()


def test_stamps_and_go_durations():
    assert logs.stamp_ns("2026-01-01T00:00:00.000000001Z") == 1767225600 * 10**9 + 1
    assert logs.stamp_ns("2026-01-01T01:00:00+01:00") == 1767225600 * 10**9
    assert logs.stamp_ns("2026-01-01T00:00:00.5Z") == 1767225600 * 10**9 + 5 * 10**8
    assert logs.stamp_ns("2026-01-01") is None and logs.stamp_ns("yesterday") is None
    assert logs.parse_go_duration("5s") == 5 * 10**9
    assert logs.parse_go_duration("1h30m") == logs.parse_go_duration("1.5h") == 5400 * 10**9
    assert logs.parse_go_duration("300ms") == 3 * 10**8
    assert logs.parse_go_duration("0") == 0
    for junk in ("5", "s", "1x", "", "1h 2m"):
        assert logs.parse_go_duration(junk) is None, junk


def test_since_keeps_the_records_written_from_then_on():
    recs = [
        ("2026-01-01T00:00:00.000000000Z", "stdout", True, b"old"),
        ("2026-01-01T00:00:10.000000000Z", "stderr", True, b"edge"),
        ("2026-01-01T00:00:20.000000000Z", "stdout", True, b"new"),
    ]
    assert [r[3] for r in logs.since(recs, logs.stamp_ns("2026-01-01T00:00:10Z"))] == [b"edge", b"new"]
