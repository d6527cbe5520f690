"""Terminals for `run -t` and `exec -t`: a pseudo-terminal per container process, relayed by the CLI;
and the same relay for `exec` without a terminal, through pipes.

The process gets the pty's slave side as its controlling terminal (it cannot
take over the user's own terminal, which belongs to the user's session); the
CLI puts the user's terminal in raw mode and copies bytes both ways, and
passes on window-size changes. The terminal lives as long as the CLI that
attached it, as with `podman run -it` without detaching.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import sys
import termios
import tty

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable


TIOCGWINSZ, TIOCSWINSZ = termios.TIOCGWINSZ, termios.TIOCSWINSZ


TIOCSPTLCK, TIOCGPTPEER = 0x40045431, 0x5441


def open_pty(ptmx: str = "/dev/ptmx") -> tuple[int, int]:
    """(master, slave) from the devpts instance of `ptmx`, the slave sized like our terminal.

    `exec -t` passes the container's own /proc/PID/root/dev/ptmx, so the
    terminal has a name inside the container (/dev/pts/N) and `tty` finds it.
    TIOCGPTPEER opens the slave through the master, never by a path the
    container could swap.
    """
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt()
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    _copy_size(slave)
    return master, slave


def _copy_size(target: int) -> None:
    if os.isatty(sys.stdin.fileno()):
        try:
            size = fcntl.ioctl(sys.stdin.fileno(), TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(target, TIOCSWINSZ, size)
        except OSError:
            pass


def relay(master: int, finished: Callable[[], bool], forward_stdin: bool = True) -> None:
    """Copy the user's terminal to `master` and back until the process side is gone.

    `finished` says when the process has ended; the loop then drains what the
    pty still holds and returns. The user's terminal is restored in any case.
    """
    stdin = sys.stdin.fileno()
    saved = None
    if forward_stdin and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(master))
    try:
        copy_streams(
            {master: sys.stdout.fileno()},
            finished,
            stdin_to=master if forward_stdin else -1,
            end_of_input=lambda: os.write(master, b"\x04"),  # as typing Ctrl-D
        )
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def copy_streams(
    outputs: dict[int, int],
    finished: Callable[[], bool],
    *,
    stdin_to: int = -1,
    end_of_input: Callable[[], object] | None = None,
) -> None:
    """The one relay of the CLI (`run -t`, `exec -t`, `exec` through pipes): copy each
    output descriptor to its destination, and our stdin to `stdin_to`, until the process has ended.

    Returns when every output is at its end, or when `finished` says the process
    has ended: what the outputs hold at that moment is drained, and nothing
    later is copied (a process the command left behind then writes into a
    closed pipe, never to the user's terminal or file). End of our stdin calls
    `end_of_input`.
    """
    stdin = sys.stdin.fileno()
    sel = selectors.PollSelector()  # not epoll: a regular file as our stdin must work too
    for fd in outputs:
        sel.register(fd, selectors.EVENT_READ)
    if stdin_to >= 0:
        sel.register(stdin, selectors.EVENT_READ)
    open_outputs = set(outputs)
    try:
        while open_outputs:
            done = finished()
            for key, _ in sel.select(0.05):
                if key.fd in open_outputs:
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: every slave side of a pty is closed
                        data = b""
                    if data:
                        try:
                            _write_all(outputs[key.fd], data)
                            continue
                        except BrokenPipeError:
                            # Whoever read our output is gone: close the process's pipe too, so
                            # that it gets SIGPIPE as it would have writing there itself.
                            _close_in_place(key.fd)
                    sel.unregister(key.fd)
                    open_outputs.discard(key.fd)
                else:
                    data = os.read(stdin, 65536)
                    try:
                        if data:
                            _write_all(stdin_to, data)
                            continue
                        if end_of_input is not None:
                            end_of_input()
                    except OSError:  # EPIPE: nothing reads the input any more
                        pass
                    sel.unregister(stdin)
            if done:
                for fd in open_outputs:
                    _drain(fd, outputs[fd])
                return
    finally:
        sel.close()


def _close_in_place(fd: int) -> None:
    """Close what `fd` refers to, keeping the number valid (on /dev/null) for its owner to close."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(null, fd, inheritable=False)
    os.close(null)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _drain(source: int, out: int) -> None:
    os.set_blocking(source, False)
    try:
        while data := os.read(source, 65536):
            _write_all(out, data)
    except OSError:
        pass
