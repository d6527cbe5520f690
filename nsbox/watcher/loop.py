"""The watcher's event loop: one selector, timers, and the children it reaps.

Nothing here knows about pods: callbacks are registered by the parts that do.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _nothing() -> None:
    pass


class Timer:
    """A call due at `when` (time.monotonic()). While a timer that `keeps_awake` is pending the
    watcher does not hibernate; the others are dropped or handed over to nsbox-idle."""

    __slots__ = ("when", "seq", "fn", "keeps_awake")

    def __init__(self, when: float, seq: int, fn: Callable[[], None], keeps_awake: bool):
        self.when = when
        self.seq = seq  # equal times run in the order they were set
        self.fn = fn
        self.keeps_awake = keeps_awake

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        """It stays in the heap and does nothing when due."""
        self.fn, self.keeps_awake = _nothing, False


class EventLoop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self._seq = itertools.count()
        self.children: dict[int, Callable[[int], None]] = {}  # pid -> on_exit(wait status)
        self.active_at = 0.0  # the last event (monotonic): the watcher hibernates after a quiet spell

    def watch(self, fileobj: Any, on_ready: Callable[[Any], None]) -> None:
        """Call `on_ready(fileobj)` whenever `fileobj` is readable."""
        self.sel.register(fileobj, selectors.EVENT_READ, on_ready)

    def unwatch(self, fileobj: Any) -> None:
        self.sel.unregister(fileobj)

    def at(self, delay: float, fn: Callable[[], None], keeps_awake: bool = True) -> Timer:
        """Call `fn` in `delay` seconds. A timer keeps the watcher from hibernating unless
        hibernation hands it over (restarts, the active deadline) or it may be dropped."""
        timer = Timer(time.monotonic() + delay, next(self._seq), fn, keeps_awake)
        heapq.heappush(self.timers, timer)
        return timer

    def every(self, period: float, fn: Callable[[], None]) -> None:
        """Periodic checks: a resumed watcher sets them up again, so they never keep it awake."""

        def tick() -> None:
            fn()
            self.at(period, tick, keeps_awake=False)

        self.at(period, tick, keeps_awake=False)

    @staticmethod
    def cancel(timer: Timer | None) -> None:
        if timer is not None:
            timer.cancel()

    @property
    def keeps_awake(self) -> bool:
        """A pending timer only this process can carry out (a SIGKILL due at the end of a grace period)."""
        return any(t.keeps_awake for t in self.timers)

    def turn(self) -> None:
        """Wait for the next event or timer; call what is ready."""
        timeout = None
        if self.timers:
            timeout = max(0.0, self.timers[0].when - time.monotonic())
        events = self.sel.select(timeout)
        if events:
            self.active_at = time.monotonic()
        for key, _ in events:
            # An earlier callback of this batch may have closed (and reused) this fd.
            if self.sel.get_map().get(key.fd) is key:
                key.data(key.fileobj)
        now = time.monotonic()
        while self.timers and self.timers[0].when <= now:
            heapq.heappop(self.timers).fn()

    # ------------------------------------------------------------ children

    def catch_signals(self) -> None:
        """SIGCHLD wakes the loop through a pipe; the terminal's and a closed pipe's signals are ignored."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        self.watch(wake_r, self._on_signal)

    def _on_signal(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> int:
        """Reap every child that has exited and call its on_exit; returns how many."""
        reaped = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped += 1
            on_exit = self.children.pop(pid, None)
            if on_exit is not None:
                on_exit(status)
