"""Termination messages (docs/lifecycle.md, "Termination messages"), as the kubelet collects
them: a file of the pod's state bound at the container's terminationMessagePath, created
empty before each start, read when the container has exited; with FallbackToLogsOnError,
the end of its log when the file says nothing and the container failed."""

from __future__ import annotations

import os

from nsbox import logs

MAX_FILE_BYTES = 4096  # kubelet MaxContainerTerminationMessageLength: the file's first 4 KiB
MAX_LOG_LINES = 80  # kubelet MaxContainerTerminationMessageLogLines
MAX_LOG_BYTES = 2048  # kubelet MaxContainerTerminationMessageLogLength: the last 2 KiB of those lines


def prepare(path: str, owner: int = 0) -> None:
    """An empty file for the container run about to start (each run writes its own message).
    Mode 0666 as the kubelet makes it: the container's user need not be root. With `owner`
    (the host ID of a hostUsers: false pod's root) it is that ID's, so root's inside: it is
    bound without an ID mapping, from the pod's scratch tmpfs (container.termination_message_mount)."""
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        os.fchmod(fd, 0o666)
        if owner:
            os.fchown(fd, owner, owner)
    finally:
        os.close(fd)


def collect(path: str, policy: str, exit_code: int, log_path: str) -> str:
    """The message of a run that has ended: the file's content, else (FallbackToLogsOnError
    and a non-zero exit) the end of its log; "" when there is none."""
    message = _read_file(path)
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        message = _log_tail(log_path)
    return message


def _read_file(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, MAX_FILE_BYTES).decode(errors="replace")
    except OSError:
        return ""  # not a regular file any more (the container may have replaced it)
    finally:
        os.close(fd)


def _log_tail(log_path: str) -> str:
    records = logs.read_records(log_path)
    lines, n = [], 0
    for _, _, full, content in reversed(records):  # the last MAX_LOG_LINES lines, partial records joined
        if full:
            n += 1
            if n > MAX_LOG_LINES:
                break
            content += b"\n"
        lines.append(content)
    text = b"".join(reversed(lines))
    return text[-MAX_LOG_BYTES:].decode(errors="replace")
