"""What pods read from ConfigMaps, Secrets and the downward API: environment and volume files.

Both are resolved by the pod's watcher, from the store (nsbox/objects.py), as
the kubelet resolves them (README, "ConfigMaps, Secrets and the downward API"):

- environment variables (`configMapKeyRef`, `secretKeyRef`, `envFrom`,
  `resourceFieldRef`) at each start of a container, never later; a missing
  object or key that is not optional keeps the container waiting with
  `CreateContainerConfigError` (`ConfigNotReady`);
- the files of configMap, secret, downwardAPI and projected volumes, written
  as the kubelet's AtomicWriter writes them and rewritten when an object
  changes; a missing object keeps the containers that mount the volume
  waiting (`MountNotReady`, a `FailedMount` event).

Secret values are never put into a message: messages name objects and keys only.
"""

from __future__ import annotations

import os
import stat
import time

from nsbox import kube, native, objects
from nsbox.errors import NsboxError, WaitingForConfig
from nsbox.model import ContainerSpec, PodSpec, Volume
from nsbox.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

CONFIG_VOLUME_KINDS = ("configMap", "secret", "downwardAPI", "projected")
OBJECT_KINDS = {"configMap": "ConfigMap", "secret": "Secret"}  # model kind -> stored kind
DEFAULT_MODE = 0o644  # the API server's default defaultMode
DATA_DIR = "..data"  # AtomicWriter: the link to the current timestamped directory
DATA_DIR_TMP = "..data_tmp"
TMPFS_MIB_PER_SOURCE = 2  # an object holds at most 1 MiB; an update briefly holds two copies


class ConfigNotReady(WaitingForConfig):
    """A container's environment refers to a missing object or key (CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


class MountNotReady(WaitingForConfig):
    """A volume the container mounts cannot be set up yet (the kubelet's FailedMount)."""

    reason = "ContainerCreating"

    def __init__(self, volume: str, message: str):
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume, self.detail = volume, message


def uses_object(pod: PodSpec, kind: str, name: str) -> bool:
    """Whether the pod refers to object `kind`/`name` (kind "configMap" or "secret") anywhere."""
    for c in pod.all_containers():
        if any(e.ref_kind == kind and e.ref_name == name for e in c.env):
            return True
        if any(e.kind == kind and e.name == name for e in c.env_from):
            return True
    return any(p.kind == kind and p.name == name for v in pod.volumes for p in v.sources)


class _Objects:
    """The objects of one namespace, each loaded once per resolution."""

    def __init__(self, root: str, namespace: str):
        self.root, self.namespace = root, namespace
        self.cache: dict[tuple[str, str], dict[str, bytes] | None] = {}

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        if (kind, name) not in self.cache:
            obj = objects.load(self.root, OBJECT_KINDS[kind], self.namespace, name)
            self.cache[kind, name] = None if obj is None else objects.data_of(obj)
        return self.cache[kind, name]


def not_found(kind: str, name: str) -> str:
    return f'{kind.lower()} "{name}" not found'


# ---------------------------------------------------------------- environment


@record
class EnvConfig:
    """A container's variables from objects, resolved at one start."""

    from_env: dict[str, str] = field(factory=dict)  # envFrom, prefixes applied, in order
    values: dict[int, str] = field(factory=dict)  # index in ContainerSpec.env -> value (absent: optional, missing)
    skipped: list[str] = field(factory=list)  # event messages: envFrom keys that are no variable names


def env_config(root: str, pod: PodSpec, c: ContainerSpec) -> EnvConfig:
    """Resolve `envFrom` and `configMapKeyRef`/`secretKeyRef` now; raises ConfigNotReady.

    The kubelet's rules (kubelet_pods.go, makeEnvironmentVariables): envFrom
    first, a key that is not a valid variable name after its prefix is
    skipped with an event; explicit `env` entries then win. A missing object
    or key is an error unless the reference is optional.
    """
    store = _Objects(root, pod.namespace)
    out = EnvConfig()
    for ref in c.env_from:
        data = store.data(ref.kind, ref.name)
        if data is None:
            if ref.optional:
                continue
            raise ConfigNotReady(not_found(ref.kind, ref.name))
        invalid = []
        for key, value in data.items():
            name = ref.prefix + key
            if kube.env_var_name_error(name):
                invalid.append(name)
                continue
            out.from_env[name] = value.decode(errors="replace")
        if invalid:
            out.skipped.append(
                f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {ref.kind} "
                f"{pod.namespace}/{ref.name} were skipped since they are considered "
                "invalid environment variable names."
            )
    for i, var in enumerate(c.env):
        if not var.ref_kind:
            continue
        data = store.data(var.ref_kind, var.ref_name)
        if data is None:
            if var.optional:
                continue
            raise ConfigNotReady(not_found(var.ref_kind, var.ref_name))
        if var.ref_key not in data:
            if var.optional:
                continue
            raise ConfigNotReady(
                f"couldn't find key {var.ref_key} in {OBJECT_KINDS[var.ref_kind]} {pod.namespace}/{var.ref_name}"
            )
        out.values[i] = data[var.ref_key].decode(errors="replace")
    return out


def config_from_environ(c: ContainerSpec, environ: dict[str, str]) -> EnvConfig:
    """The EnvConfig a running container started with, read back from its process's
    environment: `exec` and hooks see what the container sees, as with the kubelet."""
    out = EnvConfig(from_env=dict(environ))
    for i, var in enumerate(c.env):
        if var.ref_kind and var.name in environ:
            out.values[i] = environ[var.name]
    return out


# ---------------------------------------------------------------- resources


def node_allocatable(resource: str) -> int:
    """What an unset limit stands for (the kubelet's MergeContainerResourceLimits): this
    machine's CPUs (millicores), memory (bytes) or root filesystem size (bytes)."""
    if resource == "cpu":
        return 1000 * (os.cpu_count() or 1)
    if resource == "memory":
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
        return 0
    st = os.statvfs("/")
    return st.f_blocks * st.f_frsize


def resource_value(pod: PodSpec, container: str, resource: str, divisor: str) -> str:
    """A resourceFieldRef as the kubelet computes it (ExtractContainerResourceValue): the
    value divided by `divisor` ("" = 1), rounded up; an unset limit is the node's allocatable,
    an unset request is the limit (the API server's default) or 0."""
    c = pod.container(container)
    if c is None:
        raise ConfigNotReady(f"container {container} not found")
    kind, _, name = resource.partition(".")
    r = c.resources
    if name == "cpu":
        limit, request, scale = r.cpu_millis, r.cpu_request_millis, 1000
    elif name == "memory":
        limit, request, scale = r.memory_bytes, r.memory_request_bytes, 1
    else:  # ephemeral-storage: the limit that sizes the writable layer; requests reserve nothing
        limit, request, scale = r.ephemeral_storage_bytes, None, 1
    if kind == "limits":
        value = limit if limit is not None else node_allocatable(name)
    else:
        value = request if request is not None else limit if limit is not None else 0
    # cpu values are in millicores: value/1000 cores divided by the divisor.
    ratio = kube.quantity_value(value) / scale / kube.quantity_value(divisor or "1")
    return str(-(-ratio.numerator // ratio.denominator))


# ---------------------------------------------------------------- volume contents


def _field_value(pod: PodSpec, field_ref: str) -> str:
    """A downward API file's content (fieldpath.ExtractFieldPathAsString, FormatMap)."""
    simple = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid}
    if field_ref in simple:
        return simple[field_ref]
    if field_ref in ("metadata.labels", "metadata.annotations"):
        m = pod.labels if field_ref == "metadata.labels" else pod.annotations
        return "\n".join(f"{k}={_go_quote(m[k])}" for k in sorted(m))
    which, _, key = field_ref.partition("['")
    m = pod.labels if which == "metadata.labels" else pod.annotations
    return m.get(key[:-2], "")


def _go_quote(s: str) -> str:
    """Go's %q for the printable strings labels and annotations hold."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def volume_payload(root: str, pod: PodSpec, v: Volume, store: _Objects | None = None) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every file of volume `v`; raises MountNotReady.

    The kubelet's MakePayload rules: no `items` means every key at its own
    name; an item's mode, else the volume's defaultMode, else 0644; a key an
    item names must exist unless the source is optional; a missing optional
    object gives no files.
    """
    store = store or _Objects(root, pod.namespace)
    default = DEFAULT_MODE if v.default_mode is None else v.default_mode
    payload: dict[str, tuple[bytes, int]] = {}
    for p in v.sources:
        if p.kind == "downwardAPI":
            for f in p.files:
                mode = default if f.mode is None else f.mode
                if f.resource:
                    try:
                        text = resource_value(pod, f.container, f.resource, f.divisor)
                    except ConfigNotReady as e:
                        raise MountNotReady(v.name, str(e)) from None
                else:
                    text = _field_value(pod, f.field_ref)
                payload[f.path] = (text.encode(), mode)
            continue
        data = store.data(p.kind, p.name)
        if data is None:
            if p.optional:
                continue
            raise MountNotReady(v.name, not_found(p.kind, p.name))
        if not p.items:
            payload.update((k, (value, default)) for k, value in data.items())
            continue
        for item in p.items:
            if item.key not in data:
                if p.optional:
                    continue
                what = (
                    "configmap references non-existent config key"
                    if p.kind == "configMap"
                    else "references non-existent secret key"
                )
                raise MountNotReady(v.name, f"{what}: {item.key}")
            payload[item.path] = (data[item.key], default if item.mode is None else item.mode)
    return payload


# ---------------------------------------------------------------- writing volumes


def mount_tmpfs(v: Volume, target: str) -> None:
    """The volume's own small tmpfs, in the pod's mount namespace: secret data never
    touches a disk, and the volume dies with the pod."""
    size = (TMPFS_MIB_PER_SOURCE * max(1, len(v.sources)) + 1) << 20
    mode = "1777" if v.kind in ("secret", "projected") else "0777"  # as the kubelet's memory / disk emptyDir
    native.mount("tmpfs", target, "tmpfs", native.MS_NOSUID | native.MS_NODEV, f"mode={mode},size={size}")


def write_atomically(target: str, payload: dict[str, tuple[bytes, int]]) -> bool:
    """Make `target` hold exactly `payload`, as the kubelet's AtomicWriter does; False when
    it already did.

    The files go into a new timestamped directory `..<UTC time>.<random>`; the link
    `..data` is then switched to it with one rename(), so a reader sees the old set
    or the new one, never a mix; each top-level name is a link through `..data`
    (`key -> ..data/key`), made once; the old directory and the names no longer in
    the payload are removed last.
    """
    data_link = os.path.join(target, DATA_DIR)
    try:
        old = os.readlink(data_link)
    except FileNotFoundError:
        old = ""
    if old and _holds(os.path.join(target, old), payload) and _visible_ok(target, payload):
        return False
    import shutil

    ts_dir = _new_timestamped_dir(target)
    try:
        for path, (content, mode) in payload.items():
            full = os.path.join(ts_dir, path)
            os.makedirs(os.path.dirname(full), 0o755, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        tmp_link = os.path.join(target, DATA_DIR_TMP)
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(os.path.basename(ts_dir), tmp_link)
        os.rename(tmp_link, data_link)
    except BaseException:
        shutil.rmtree(ts_dir, ignore_errors=True)
        raise
    wanted = {path.split("/", 1)[0] for path in payload}
    for name in os.listdir(target):
        if not name.startswith("..") and name not in wanted:
            _remove(os.path.join(target, name))
    for name in sorted(wanted):
        link = os.path.join(target, name)
        if not os.path.islink(link) or os.readlink(link) != f"{DATA_DIR}/{name}":
            if os.path.lexists(link):
                _remove(link)
            os.symlink(f"{DATA_DIR}/{name}", link)
    if old:
        shutil.rmtree(os.path.join(target, old), ignore_errors=True)
    return True


def _new_timestamped_dir(target: str) -> str:
    """`..2006_01_02_15_04_05.<random number>`, as Go's MkdirTemp names it; mode 0755 so
    that any user of the pod can walk it (the files' own modes decide the rest)."""
    prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    while True:
        path = os.path.join(target, prefix + str(int.from_bytes(os.urandom(4), "little")))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o755)
        return path


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _holds(ts_dir: str, payload: dict[str, tuple[bytes, int]]) -> bool:
    """Whether the data directory has exactly these files with these contents and modes."""
    found = []
    for dirpath, _dirs, files in os.walk(ts_dir):
        found += [os.path.relpath(os.path.join(dirpath, f), ts_dir) for f in files]
    if sorted(found) != sorted(payload):
        return False
    for path, (content, mode) in payload.items():
        full = os.path.join(ts_dir, path)
        if stat.S_IMODE(os.lstat(full).st_mode) & ~0o070 != mode & ~0o070:
            return False  # group bits are the fsGroup rule's
        with open(full, "rb") as f:
            if f.read() != content:
                return False
    return True


def _visible_ok(target: str, payload: dict[str, tuple[bytes, int]]) -> bool:
    wanted = {path.split("/", 1)[0] for path in payload}
    present = {n for n in os.listdir(target) if not n.startswith("..")}
    return present == wanted and all(
        os.readlink(os.path.join(target, n)) == f"{DATA_DIR}/{n}"
        for n in wanted
        if os.path.islink(os.path.join(target, n))
    )


def set_up(root: str, pod: PodSpec, v: Volume, target: str, store: _Objects | None = None) -> bool:
    """Write volume `v` into its (mounted) directory and give it to the pod's fsGroup;
    returns whether its files changed. Raises MountNotReady."""
    payload = volume_payload(root, pod, v, store)
    changed = write_atomically(target, payload)
    if changed:
        from nsbox.volumes import set_volume_ownership

        set_volume_ownership(target, pod.fs_group, read_only=True, policy=pod.fs_group_change_policy)
    return changed


def sync_volumes(root: str, pod: PodSpec, volume_dir: Any) -> dict[str, str]:
    """Set up or refresh every config volume of the pod; returns volume -> why it cannot be
    set up (MountNotReady.detail), for those that cannot (they keep their last files)."""
    store = _Objects(root, pod.namespace)
    errors = {}
    for v in pod.volumes:
        if v.kind in CONFIG_VOLUME_KINDS:
            if not os.path.ismount(volume_dir(v.name)):
                # Not the pod's tmpfs (a watcher that adopted the pod lives outside its mount
                # namespace): writing here would put the data on the disk below.
                continue
            try:
                set_up(root, pod, v, volume_dir(v.name), store)
            except MountNotReady as e:
                errors[v.name] = e.detail
            except (NsboxError, OSError) as e:  # a damaged object, a full tmpfs: retried at the next sync
                errors[v.name] = str(e)
    return errors


def resolve_sub_path(volume_dir: str, sub_path: str) -> str:
    """A subPath of a config volume, through its links: `key` -> `..<ts>/key`. The mount
    then holds that file, and later updates (a new `..<ts>`) do not reach it, as with the
    kubelet. The volume is nsbox's own and read-only to the pod: its links can be trusted."""
    real = os.path.realpath(os.path.join(volume_dir, sub_path))
    base = os.path.realpath(volume_dir)
    if real != base and not real.startswith(base + "/"):
        raise NsboxError(f'subPath "{sub_path}" must be a relative path inside the volume')
    return os.path.relpath(real, base)
