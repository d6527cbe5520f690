"""The pod runtime as a library: create, add to, look at, exec into, delete and collect pods.

The CLI is a thin layer over this module. Each operation that changes a pod
takes the pod's lock, so concurrent CLI calls on one pod are serialised;
operations on different pods never wait for each other.
"""

from __future__ import annotations

import json
import os
import stat

from nsbox import kube
from nsbox.errors import AlreadyExists, NotFound, NsboxError
from nsbox.model import ContainerSpec, PodSpec, Volume
from nsbox.record import field, record
from nsbox.state import FileLock, PodPaths, Root, read_json, remove_tree, write_state

# `network` (bridge pods only), `watcher` (talking to or starting a watcher), `container` and
# `socket` are imported where they are used: `get pods` and the other reading commands need none.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from nsbox.deletion import PendingDelete

CONFIG_SYNC_TIMEOUT = 5.0  # config_changed: how long one pod's watcher may take to resync


def new_pod_uid() -> str:
    """A random RFC 4122 version 4 UUID, as str(uuid.uuid4()), without importing uuid."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # variant RFC 4122
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@record
class PodView:
    """Everything known about one pod at one moment, for display."""

    paths: PodPaths
    spec: PodSpec
    status: dict[str, Any]
    deletion: dict[str, Any] | None
    watcher_alive: bool
    report_pipe: int = -1  # `create(follow=True)`: where the watcher reports the exit codes
    logs: dict[str, Any] = field(factory=dict)  # and the containers' first logs, already open
    start_errors: list[str] = field(factory=list)  # containers that could not start (StartError)

    def container_status(self, name: str) -> dict[str, Any] | None:
        for st in self.status.get("containers", []):
            if st["name"] == name:
                return st
        return None


class Runtime:
    def __init__(self, root: str, image_store: str | None = None):
        self.root = Root(root)
        self.image_store_option = image_store  # --image-store; None: $NSBOX_IMAGE_STORE or the default

    @property
    def image_store(self) -> str:
        """Where the images of the pods this runtime creates come from (docs/images.md, "Store")."""
        from nsbox import images

        return images.store_path(self.image_store_option)

    # ------------------------------------------------------------ reading

    def view(self, paths: PodPaths) -> PodView | None:
        """What the pod's files say, or None if it is gone; changes nothing (see `repair`)."""
        raw = read_json(paths.pod_json)
        if raw is None:
            return None
        return PodView(
            paths,
            PodSpec.from_dict(raw),
            read_json(paths.status_json) or {},
            read_json(paths.deletion_json),
            paths.watcher_alive(),
        )

    def repair(self, v: PodView) -> PodView:
        """Restart what a pod's dead watcher left undone, and return the view unchanged.

        A termination whose watcher died is started again, with the full grace period
        (docs/lifecycle.md, Termination 6). Reading never does this: the commands that look
        at pods call it on what they read, so any command that sees such a pod resumes it."""
        if v.deletion is not None and not v.watcher_alive:
            self.resume_termination(v.paths)
        return v

    def resume_termination(self, paths: PodPaths) -> None:
        from nsbox import watcher

        try:
            watcher.launch(self.root, paths.uid, adopt=True)
        except NsboxError:
            pass  # another command was quicker, or the pod is gone

    def get(self, namespace: str, name: str) -> PodView:
        paths = self.root.require(namespace, name)
        v = self.view(paths)
        if v is None:
            raise NotFound(f'pod "{name}" not found')
        return v

    def pods(self, namespace: str | None) -> Iterator[PodView]:
        for _ns, _name, uid in self.root.names(namespace):
            v = self.view(self.root.pod(uid))
            if v is not None:
                yield v

    # ------------------------------------------------------------ creating

    def create(
        self,
        spec: PodSpec,
        *,
        stdio: tuple[int, int, int] | None = None,
        remove_on_start_failure: bool = False,
        follow: bool = False,
    ) -> PodView:
        """Make the pod's state, claim its name, and start its watcher (which starts the containers)."""
        from nsbox import watcher

        self.check(spec)
        if spec.network == "bridge":
            from nsbox import network

            network.config_from_env()  # a bad NSBOX_BRIDGE/NSBOX_BRIDGE_SUBNET fails before anything exists
        self.root.ensure()
        if self.root.lookup(spec.namespace, spec.name):
            raise AlreadyExists(f'pod "{spec.name}" already exists')
        spec.uid = new_pod_uid()
        spec.creation_timestamp = kube.rfc3339()
        # Read here, in the host's UTS namespace: the watcher, which starts the containers, lives
        # in the pod's, where uname() names the pod.
        spec.node_name = os.uname().nodename
        if any(c.runs_image for c in spec.all_containers()):
            spec.image_store = self.image_store
        paths = self.root.pod(spec.uid)
        os.mkdir(paths.dir, 0o700)
        try:
            if any(v.kind != "hostPath" for v in spec.volumes):
                os.mkdir(os.path.join(paths.dir, "volumes"), 0o755)
            for v in spec.volumes:
                if v.kind == "emptyDir":
                    os.mkdir(paths.volume(v.name), 0o777)
                    os.chmod(paths.volume(v.name), 0o777)
                elif v.kind != "hostPath":
                    os.mkdir(paths.volume(v.name), 0o755)  # where the watcher mounts its tmpfs
                else:
                    prepare_host_path(v)
            write_state(paths.pod_json, spec.to_dict())
            self.root.claim(spec.namespace, spec.name, spec.uid)
        except BaseException:
            remove_tree(paths.dir)
            raise
        logs = {}
        if follow:
            # Open the first log of each container now: with --rm a quick container's pod may be
            # gone, log included, before we would get to open it.
            for c in spec.containers:
                path = paths.log_file(spec.namespace, spec.name, c.name, 0)
                os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                logs[c.name] = open(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600), "rb")
        try:
            primed = self._cgroups_before_spawn(spec, spec.all_containers())
            report = watcher.launch(self.root, spec.uid, stdio=stdio, follow=follow, prime=primed)
        except BaseException:
            self._destroy_without_watcher(paths, spec)
            raise
        if report.get("errors") and remove_on_start_failure:
            # `run`: a pod whose only container cannot start is not worth keeping.
            if "pipe" in report:
                os.close(report["pipe"])
            try:
                self.delete(spec.namespace, spec.name, grace=0, force=True, wait=True)
            except NotFound:
                pass  # --rm got there first
            raise NsboxError(report["errors"][0])
        # A --rm pod whose container was quick may be gone already: that is not an error.
        view = self.view(paths)
        view = self.repair(view) if view is not None else PodView(paths, spec, {}, None, False)
        view.report_pipe = report.get("pipe", -1)
        view.logs = logs
        view.start_errors = report.get("errors", [])
        return view

    def check(self, spec: PodSpec) -> None:
        """What only this machine can tell about a valid spec (executables, hostPaths); changes nothing.
        `apply` checks every pod of a file before it creates any."""
        from nsbox import container

        for c in spec.all_containers():
            container.check_command(spec, c)
        for v in spec.volumes:
            if v.kind == "hostPath":
                check_host_path(v)

    def add_container(
        self, namespace: str, pod_name: str, c: ContainerSpec, stdio: tuple[int, int, int] | None = None
    ) -> PodView:
        """`run --pod POD NAME`: a new container in a running pod."""
        paths = self.root.require(namespace, pod_name)
        with FileLock(paths.lock):
            v = self.view(paths)
            if v is None:
                raise NotFound(f'pod "{pod_name}" not found')
            self.repair(v)
            if v.deletion is not None:
                raise NsboxError(f'pod "{pod_name}" is being deleted')
            if not v.watcher_alive:
                raise NsboxError(f'pod "{pod_name}" has lost its watcher; delete it and create it again')
            if v.spec.container(c.name) is not None:
                raise AlreadyExists(f'container "{c.name}" already exists in pod "{pod_name}"')
            from nsbox import container

            container.check_command(v.spec, c)
            if c.runs_image and not v.spec.image_store:
                v.spec.image_store = self.image_store
            v.spec.containers.append(c)
            write_state(paths.pod_json, v.spec.to_dict())
            primed = self._cgroups_before_spawn(v.spec, [c])
            reply = self.request(paths, {"op": "start", "container": c.name}, fds=list(stdio or ()), prime=primed)
        if "error" in reply:
            raise NsboxError(reply["error"])
        return self.repair(self.get(namespace, pod_name))

    # ------------------------------------------------------------ deleting (docs/lifecycle.md, Termination)

    def delete(
        self, namespace: str, name: str, *, grace: int | None = None, force: bool = False, wait: bool = True
    ) -> None:
        """Ask the pod's watcher to end the pod (docs/lifecycle.md, Termination) and, with `wait`,
        return once it is gone."""
        self.request_delete(namespace, name, grace=grace, force=force).finish(wait)

    def request_delete(
        self, namespace: str, name: str, *, grace: int | None = None, force: bool = False
    ) -> PendingDelete:
        """Hand the deletion to the pod's watcher (nsbox/deletion.py); the caller waits on the
        result when it likes, so that several pods end in parallel (as `kubectl delete` does)."""
        from nsbox import deletion

        return deletion.request(self, namespace, name, grace=grace, force=force)

    @staticmethod
    def _cgroups_before_spawn(spec: PodSpec, containers: list[ContainerSpec]) -> bool:
        """On a cgroup-v1 host, make the cgroups of the pod, of `containers` (which its watcher
        is about to start) and of the pause process now, and say so: the CLI can then prime
        their migration while it waits for the watcher (docs/design.md §12). The prime holds
        the kernel's cgroup mutex for its grace period, so the watcher must find its
        directories made; it makes them itself too (a restart, an adopting watcher), and an
        mkdir of one that is there takes no lock. False (nothing made) on a v2 host or for a
        pod without processes to start."""
        from nsbox import cgroups

        cg = cgroups.detect()
        if cg.version != 1 or not (containers or spec.share_process_namespace):
            return False
        from nsbox.watcher.holder import PAUSE_CGROUP

        names = [c.name for c in containers] + ([PAUSE_CGROUP] if spec.share_process_namespace else [])
        cg.create(cg.pod_path(spec.uid))
        for name in names:
            cg.create(cg.container_path(spec.uid, name))
        return True

    def _destroy_without_watcher(self, paths: PodPaths, spec: PodSpec) -> None:
        """Undo a create whose watcher never came up."""
        from nsbox import cgroups, network, userns

        cg = cgroups.detect()
        pod_cg = cg.pod_path(spec.uid)
        if cg.populated(pod_cg):
            cg.kill(pod_cg)
        cg.remove(pod_cg)
        network.release(self.root.path, spec.uid)
        userns.release(self.root.path, spec.uid)
        self.root.release(spec.namespace, spec.name, spec.uid)
        remove_tree(paths.dir)

    # ------------------------------------------------------------ talking to the watcher

    def request(
        self, paths: PodPaths, msg: dict[str, Any], fds: list[int] | None = None, prime: bool = False
    ) -> dict[str, Any]:
        """One request to the pod's watcher and its reply. `prime`: the watcher starts a process
        for it, whose cgroup migration the CLI primes while it waits (_cgroups_before_spawn)."""
        from nsbox import control

        try:
            sock = control.connect(paths.ctl)
        except OSError as e:
            raise NsboxError(f"cannot reach the pod's watcher: {e.strerror}") from None
        with sock:
            data = json.dumps(msg).encode()
            if fds:
                import socket

                socket.send_fds(sock, [data], fds)
            else:
                sock.send(data)
            if prime:
                from nsbox import cgroups

                cgroups.detect().prime_migrations()
            sock.settimeout(None)
            reply = control.recv(sock)
        return reply or {"error": "the pod's watcher went away"}

    def wait_exit(self, view: PodView, name: str) -> int | None:
        """Block until container `name` has ended for good; its exit code (None if unknown)."""
        from nsbox import control

        if view.report_pipe >= 0:
            from nsbox import watcher

            try:
                while (line := watcher.read_line(view.report_pipe)) is not None:
                    codes = json.loads(line).get("exitCodes", {})
                    if name in codes:
                        return codes[name]
                return None
            finally:
                os.close(view.report_pipe)
        paths = view.paths
        try:
            sock = control.connect(paths.ctl)
        except OSError:
            return None
        with sock:
            sock.settimeout(None)
            sock.send(json.dumps({"op": "wait-exit", "container": name}).encode())
            while True:
                msg = control.recv(sock)
                if msg is None:
                    return None
                if "exited" in msg:
                    return msg["exited"]
                if msg.get("gone"):
                    return msg.get("exitCodes", {}).get(name)

    # ------------------------------------------------------------ exec

    def config_changed(self, namespace: str, kind: str, name: str) -> None:
        """A ConfigMap or Secret was created, changed or deleted: the pods of `namespace`
        that use it refresh their volumes and retry containers that waited for it.

        Only those pods' watchers are asked (a hibernated one wakes for it); each
        answers once its volumes are rewritten, so the change is visible when this
        returns. A watcher that does not answer in time catches up at its next resync."""
        from nsbox import control, projection

        kind = {"ConfigMap": "configMap", "Secret": "secret"}.get(kind, kind)
        for _ns, _name, uid in self.root.names(namespace):
            paths = self.root.pod(uid)
            raw = read_json(paths.pod_json)
            if raw is None or not projection.uses_object(PodSpec.from_dict(raw), kind, name):
                continue
            if not paths.watcher_alive():
                continue
            try:
                with control.connect(paths.ctl, timeout=CONFIG_SYNC_TIMEOUT) as sock:
                    sock.send(json.dumps({"op": "sync-config"}).encode())
                    control.recv(sock)
            except (OSError, ValueError):
                pass

    def exec(
        self,
        namespace: str,
        pod_name: str,
        container_name: str | None,
        command: list[str],
        *,
        stdin: bool = False,
        tty: bool = False,
    ) -> int:
        """Run `command` in a running container (nsbox/podexec.py); its exit code."""
        from nsbox import podexec

        return podexec.run(self, namespace, pod_name, container_name, command, stdin=stdin, tty=tty)

    # ------------------------------------------------------------ garbage collection

    def gc(self, idle_bridges: bool = False) -> list[str]:
        """Reclaim what crashed pods left behind (nsbox/garbage.py); what was done, one line each."""
        from nsbox import garbage

        return garbage.collect(self, idle_bridges)


_HOST_PATH_KINDS = {
    "Directory": stat.S_ISDIR,
    "File": stat.S_ISREG,
    "Socket": stat.S_ISSOCK,
    "CharDevice": stat.S_ISCHR,
    "BlockDevice": stat.S_ISBLK,
}


def check_host_path(v: Volume) -> None:
    """Refuse a hostPath that is missing (unless its type creates it) or not of its type; changes nothing."""
    kind = v.host_path_type.removesuffix("OrCreate")
    try:
        mode = os.stat(v.host_path).st_mode
    except FileNotFoundError:
        if v.host_path_type == "FileOrCreate" and not os.path.isdir(os.path.dirname(v.host_path)):
            raise NsboxError(f'volume "{v.name}": the directory of hostPath {v.host_path} does not exist') from None
        if v.host_path_type not in ("", "DirectoryOrCreate", "FileOrCreate"):
            raise NsboxError(f'volume "{v.name}": hostPath {v.host_path} does not exist') from None
        return
    check = _HOST_PATH_KINDS.get(kind)
    if check and not check(mode):
        raise NsboxError(f'volume "{v.name}": hostPath {v.host_path} is not a {kind} (type {v.host_path_type})')


def prepare_host_path(v: Volume) -> None:
    """Create a missing hostPath: an empty file for FileOrCreate, else a directory (for "" too,
    as container runtimes do for a bind mount)."""
    if os.path.lexists(v.host_path):
        return
    if v.host_path_type == "FileOrCreate":
        os.close(os.open(v.host_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    else:
        os.makedirs(v.host_path, 0o755, exist_ok=True)


def pick_container(v: PodView, name: str | None) -> ContainerSpec:
    if name is None:
        if len(v.spec.containers) == 1:
            return v.spec.containers[0]
        names = " ".join(c.name for c in v.spec.all_containers())
        raise NsboxError(f"a container name must be specified for pod {v.spec.name}, choose one of: [{names}]")
    c = v.spec.container(name)
    if c is None:
        raise NotFound(f'container "{name}" not found in pod "{v.spec.name}"')
    return c
