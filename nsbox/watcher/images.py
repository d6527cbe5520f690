"""Images in a running pod: each container that runs its image has it before it starts, as
the kubelet's image manager sees to it (docs/images.md, "Image pods").

The pull policy decides whether the store is asked first or the registry every time.
A pull runs as its own process (`nsbox image pull`, in a session of its own so that
deleting the pod can end it and skopeo with it at once); the watcher's loop reaps it.
Meanwhile the container waits: ContainerCreating while the first pull runs, then
ErrImagePull when it failed and ImagePullBackOff until the next try, with the kubelet's
events (Pulling, Pulled, Failed, BackOff) and its doubling back-off.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from functools import partial

from nsbox import kube, native
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox.images import Image, Store
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running
    from nsbox.watcher.loop import Timer

NEVER_PULL_RETRY = 10.0  # policy Never: look in the store again (the kubelet's pod resync)
BACKOFF_SWITCH = 1.0  # ErrImagePull turns into ImagePullBackOff this soon (the kubelet's next sync)


class WaitingForImage(NsboxError):
    """The container's image is being pulled, or cannot be had yet: its state says which."""


class Pull:
    """One `nsbox image pull` process, for one container."""

    def __init__(self, pid: int, ref: str, errors: str):
        self.pid = pid
        self.ref = ref
        self.errors = errors  # the file its stderr goes to
        self.began = time.monotonic()


class ImagePulls:
    def __init__(self, w: Watcher):
        self.w = w
        self.pulls: dict[str, Pull] = {}  # container name -> its pull under way
        self.timers: dict[str, Timer] = {}  # container name -> its next step (back-off)
        self.backoff: dict[str, int] = {}  # image -> failed pulls in a row
        self.fresh: set[str] = set()  # containers whose image was pulled for this start
        self.leased: set[str] = set()  # image ids this pod holds in the store
        self.cancelled = False  # the pod is ending: no pull starts or is waited for
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from nsbox import images

            self._store = images.Store(self.w.pod.image_store or images.store_path())
        return self._store

    def image_for(self, r: Running) -> Image | None:
        """The image container `r` starts from now (None when it runs no image); raises
        WaitingForImage while it is being had, with `r`'s state saying why."""
        c = r.spec
        if not c.runs_image:
            return None
        if c.name in self.pulls or c.name in self.timers:
            raise WaitingForImage(f'image "{c.image}" is not here yet')
        from nsbox import images

        try:
            ref = images.normalize(c.image)
        except NsboxError as e:
            self._wait(r, "InvalidImageName", f'Failed to apply default image tag "{c.image}": {e}', "InspectFailed")
            raise WaitingForImage(str(e)) from None
        image = self.store.lookup(ref)
        policy = c.image_pull_policy
        if c.name in self.fresh and image is not None:
            self.fresh.discard(c.name)
        elif image is None and policy == "Never":
            message = f'Container image "{c.image}" is not present with pull policy of Never'
            self._wait(r, "ErrImageNeverPull", message, "ErrImageNeverPull")
            self.timers[c.name] = self.w.loop.at(NEVER_PULL_RETRY, partial(self._retry, r))
            raise WaitingForImage(message)
        elif image is None or policy == "Always":
            self._pull(r, ref)
            raise WaitingForImage(f'pulling image "{c.image}"')
        else:
            self.w.event("Normal", "Pulled", f'Container image "{c.image}" already present on machine', c.name)
        self._lease(image)
        return image

    def _lease(self, image: Image) -> None:
        """Tell the store this pod uses `image`, so that `image rm` refuses to remove it. The
        lease names every image of the pod the store has (a watcher back from hibernation
        knows only what it starts next)."""
        if image.id in self.leased:
            return
        from nsbox import images

        self.leased.add(image.id)
        for c in self.w.pod.all_containers():
            if c.runs_image:
                try:
                    other = self.store.lookup(images.normalize(c.image))
                except NsboxError:
                    continue
                if other is not None:
                    self.leased.add(other.id)
        self.store.lease(self.w.uid, self.w.root.path, self.w.uid, sorted(self.leased))

    def release(self) -> None:
        """The pod is gone: its images are free to remove."""
        if any(c.runs_image for c in self.w.pod.all_containers()):
            self.store.release(self.w.uid)
            self.leased.clear()

    # ------------------------------------------------------------ pulling

    def _pull(self, r: Running, ref: str) -> None:
        """Start `nsbox image pull` for `r`'s image, in the host's network namespace (the
        watcher lives in the pod's, where a registry is out of reach)."""
        w, c = self.w, r.spec
        errors = w.paths.container_dir(c.name) + ".pull"
        argv = [sys.executable, "-m", "nsbox", "--image-store", self.store.path, "image", "pull", ref]
        err_fd = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        net = w.state.host_netns_fd
        try:
            pid, pidfd = native.spawn(
                native.SpawnRequest(
                    argv=argv,
                    exec_paths=[sys.executable],
                    env=[f"{k}={v}" for k, v in os.environ.items()],
                    join=[(net, native.CLONE_NEWNET)] if net >= 0 else [],
                    stderr=err_fd,
                    setsid=True,  # its own session: cancel() ends skopeo with it
                )
            )
        finally:
            os.close(err_fd)
        if pidfd >= 0:
            os.close(pidfd)
        self.pulls[c.name] = Pull(pid, ref, errors)
        w.loop.children[pid] = partial(self._pulled, r)
        w.event("Normal", "Pulling", f'Pulling image "{c.image}"', c.name)
        if "waiting" not in r.state or r.state["waiting"].get("reason") not in ("ErrImagePull", "ImagePullBackOff"):
            r.state = {"waiting": {"reason": "ContainerCreating"}}
        w.dirty = True

    def _pulled(self, r: Running, status: int) -> None:
        w, c = self.w, r.spec
        pull = self.pulls.pop(c.name)
        took = time.monotonic() - pull.began
        message = _error_line(pull.errors)
        _remove(pull.errors)
        if self.cancelled or w.termination.deletion is not None or w.state.ended or w.done:
            return
        image = self.store.lookup(pull.ref) if os.waitstatus_to_exitcode(status) == 0 else None
        if image is None:
            self._failed(r, message or f"nsbox image pull exited with status {os.waitstatus_to_exitcode(status)}")
            return
        self.backoff.pop(pull.ref, None)
        w.event("Normal", "Pulled", kube.pulled_message(c.image, took, took, image.size), c.name)
        self.fresh.add(c.name)
        w.containers.try_start(r)

    def _failed(self, r: Running, message: str) -> None:
        """ErrImagePull now, ImagePullBackOff soon after, and another pull when the back-off is over."""
        w, c = self.w, r.spec
        w.event("Warning", "Failed", f'Failed to pull image "{c.image}": {message}', c.name)
        self._wait(r, "ErrImagePull", message, "Failed", event="Error: ErrImagePull")
        ref = c.image
        failures = self.backoff.get(ref, 0)
        self.backoff[ref] = failures + 1
        base, cap = w.containers.base_backoff, w.containers.max_backoff
        if "nsbox.io/backoff-base-seconds" not in w.pod.annotations:
            base, cap = kube.IMAGE_BACKOFF_BASE, kube.IMAGE_BACKOFF_MAX
        delay = kube.restart_backoff(failures + 1, base, cap)  # 10 s, 20 s, 40 s … 300 s
        self.timers[c.name] = w.loop.at(min(BACKOFF_SWITCH, delay / 2), partial(self._back_off, r, message, delay))

    def _back_off(self, r: Running, message: str, delay: float) -> None:
        w, c = self.w, r.spec
        w.event("Normal", "BackOff", f'Back-off pulling image "{c.image}"', c.name)
        detail = f'Back-off pulling image "{c.image}": ErrImagePull: {message}'
        self._wait(r, "ImagePullBackOff", detail, "Failed", event="Error: ImagePullBackOff")
        self.timers[c.name] = w.loop.at(delay - min(BACKOFF_SWITCH, delay / 2), partial(self._retry, r))

    def _retry(self, r: Running) -> None:
        self.timers.pop(r.spec.name, None)
        w = self.w
        if w.termination.deletion is not None or w.state.ended or w.done or r.running:
            return
        w.containers.try_start(r)

    def _wait(self, r: Running, reason: str, message: str, event_reason: str, event: str = "") -> None:
        """Container `r` waits with `reason`; a Warning event (`event`, else `message`) when that is news."""
        state = {"waiting": {"reason": reason, "message": message}}
        if r.state != state:
            self.w.event("Warning", event_reason, event or message, r.spec.name)
        r.state = state
        self.w.dirty = True

    def cancel(self) -> None:
        """The pod ends: every pull stops now (its whole session: the CLI and skopeo)."""
        self.cancelled = True
        for pull in self.pulls.values():
            try:
                os.killpg(pull.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _remove(pull.errors)
        for timer in self.timers.values():
            self.w.loop.cancel(timer)
        self.timers.clear()


def _error_line(path: str) -> str:
    """The last `error:` line the pull wrote, without the prefix."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
