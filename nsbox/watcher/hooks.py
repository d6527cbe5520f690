"""Lifecycle hooks (postStart, preStop): a handler (exec, httpGet, tcpSocket, sleep: actions.py)
run for a running container, whose outcome decides what happens next."""

from __future__ import annotations

import signal

from nsbox.watcher import actions

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable

    from nsbox.model import Handler
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running


def run(w: Watcher, r: Running, handler: Handler, kind: str, on_done: Callable[[bool], None] | None = None) -> None:
    """Run hook `kind` ("PostStart", "PreStop") of container `r`; `on_done(ok)` when it has ended.
    A failure is a Failed<kind>Hook event; a failed postStart kills the container (as the kubelet does).
    A hook has no timeout of its own: a preStop is bounded by the grace period (termination.py)."""
    pid = r.pid

    def done(ok: bool, output: str) -> None:
        if not ok:
            w.event("Warning", f"Failed{kind}Hook", _failure(handler, kind, output), r.spec.name)
            if kind == "PostStart" and r.running and r.pid == pid and w.termination.deletion is None:
                w.containers.signal(r, signal.SIGKILL)
        if on_done:
            on_done(ok)

    actions.run(w, r, handler, None, done)


def _failure(handler: Handler, kind: str, output: str) -> str:
    if handler.kind == "exec":
        return f"{kind} hook {handler.command!r} failed: {output.strip()}"
    return f"{kind} hook ({handler.kind}) failed: {output.strip()}"
