"""ConfigMaps, Secrets and the downward API in a running pod: config volumes kept up to date,
and containers that wait for an object before they can start."""

from __future__ import annotations

import os
from functools import partial

# `nsbox.projection` is imported where it is used: a pod that uses no object never loads it.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.errors import WaitingForConfig
    from nsbox.model import ContainerSpec, Volume
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running

CONFIG_RETRY = 10.0  # a container waiting for a ConfigMap or Secret tries again (also hibernated)
CONFIG_RESYNC_PERIOD = 60.0  # config volumes are refreshed while awake even if no change was announced


class ConfigVolumes:
    def __init__(self, w: Watcher):
        self.w = w

    @property
    def volumes(self) -> list[Volume]:
        """configMap, secret, downwardAPI and projected volumes (projection.CONFIG_VOLUME_KINDS)."""
        return [v for v in self.w.pod.volumes if v.kind not in ("emptyDir", "hostPath")]

    def mount(self) -> None:
        """Each config volume on its own tmpfs, filled now."""
        if not self.volumes:
            return
        from nsbox import projection

        for v in self.volumes:
            projection.mount_tmpfs(v, self.w.paths.volume(v.name))
        self.sync()

    def sync(self) -> None:
        """Bring the config volumes up to date with the store (the kubelet's resync)."""
        w = self.w
        if w.done or not self.volumes:
            return
        from nsbox import projection

        errors = projection.sync_volumes(w.root.path, w.pod, w.paths.volume)
        for name, detail in errors.items():
            if w.state.mount_errors.get(name) != detail:  # one event per cause, as the kubelet's are aggregated
                w.event("Warning", "FailedMount", str(projection.MountNotReady(name, detail)))
        w.state.mount_errors = errors

    def resync_periodically(self) -> None:
        if self.volumes:
            self.w.loop.every(CONFIG_RESYNC_PERIOD, self.sync)

    def container_config(self, c: ContainerSpec) -> Any:
        """What container `c` needs from objects before it starts: its volumes set up, its
        variables resolved (projection.EnvConfig, or None when it uses no object)."""
        w = self.w
        for m in c.volume_mounts:
            if m.name in w.state.mount_errors:
                from nsbox import projection

                # A volume set up once keeps its files when its object goes: only a first set-up waits.
                if not os.path.lexists(os.path.join(w.paths.volume(m.name), projection.DATA_DIR)):
                    raise projection.MountNotReady(m.name, w.state.mount_errors[m.name])
        if c.env_from or any(e.ref_kind for e in c.env):
            from nsbox import projection

            return projection.env_config(w.root.path, w.pod, c)
        return None

    def wait(self, r: Running, e: WaitingForConfig) -> None:
        """The kubelet's waiting states: ContainerCreating with a FailedMount event (a volume),
        CreateContainerConfigError with a Failed event (a variable); tried again in
        CONFIG_RETRY seconds, or at once when an object changes (sync-config)."""
        if e.reason == "ContainerCreating":
            state = {"waiting": {"reason": e.reason}}  # the FailedMount event is sync()'s
        else:
            state = {"waiting": {"reason": e.reason, "message": str(e)}}
            if r.state != state:
                self.w.event("Warning", "Failed", f"Error: {e}", r.spec.name)
        r.state = state
        self.w.loop.cancel(r.config_timer)
        self.retry_in(r, CONFIG_RETRY)
        self.w.dirty = True

    def retry_in(self, r: Running, delay: float) -> None:
        """Try to start `r` again in `delay` seconds; hibernation hands the timer over to nsbox-idle."""
        r.config_timer = self.w.loop.at(delay, partial(self._retry, r), keeps_awake=False)

    def _retry(self, r: Running) -> None:
        w = self.w
        r.config_timer = None
        if w.termination.deletion is not None or w.state.ended or r.running:
            return
        if w.state.mount_errors:
            self.sync()
        w.containers.try_start(r)

    def changed(self) -> None:
        """An object changed (Runtime.config_changed): refresh volumes, retry who waited for one."""
        self.sync()
        for r in self.w.containers:
            if r.config_timer is not None:
                self.w.loop.cancel(r.config_timer)
                self._retry(r)
