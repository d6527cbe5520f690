"""Terminals for `run -t` and `exec -t`: a pseudo-terminal per container process, relayed by the CLI.

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
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = None
    if forward_stdin and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(master))
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    if forward_stdin:
        sel.register(stdin, selectors.EVENT_READ)
    try:
        while True:
            done = finished()
            for key, _ in sel.select(0.05):
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every slave side is closed
                        return
                    if not data:
                        return
                    os.write(stdout, data)
                else:
                    data = os.read(stdin, 65536)
                    if not data:
                        sel.unregister(stdin)
                        os.write(master, b"\x04")  # end of input, as typing Ctrl-D
                        continue
                    os.write(master, data)
            if done:
                _drain(master, stdout)
                return
    finally:
        sel.close()
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _drain(master: int, out: int) -> None:
    os.set_blocking(master, False)
    try:
        while data := os.read(master, 65536):
            os.write(out, data)
    except OSError:
        pass
