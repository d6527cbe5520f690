"""System-call filters (docs/security.md, "System calls").

Which profile a container gets is decided here (`choice`): privileged → none;
else its `seccompProfile`, else the pod's, else RuntimeDefault (default.json,
beside this file). The profile is an OCI seccomp JSON document; `compile_profile`
turns it into a classic BPF program with libseccomp (nsbox._seccomp), resolving
the rules that depend on the container's capabilities, the architecture and
the kernel, and the program is cached under <root>/cache/seccomp by a hash of
everything it depends on. The spawn child only installs the program
(csrc/nsbox.c, install_seccomp): it never loads libseccomp.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os

from nsbox import state
from nsbox.errors import NsboxError, WaitingForConfig
from nsbox.record import record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.model import ContainerSpec, PodSpec

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.json")
KINDS = ("RuntimeDefault", "Unconfined", "Localhost")  # seccompProfile.type
BPF_INSN = 8  # bytes of one struct sock_filter
BPF_MAXINSNS = 4096  # the kernel's limit for one filter

_ACTIONS = {  # libseccomp's SCMP_ACT_* values (seccomp.h); ERRNO and TRACE carry a number
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
# uname -m → the architecture names profiles' includes/excludes use (Go's GOARCH, as moby's)
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386", "armv7l": "arm", "armv8l": "arm"}


class ProfileProblem(WaitingForConfig):
    """A Localhost profile that is missing or not a valid profile: the container waits with
    the kubelet's CreateContainerError and is tried again (the file may be fixed)."""

    reason = "CreateContainerError"


@record
class Choice:
    kind: str  # "RuntimeDefault" | "Unconfined" | "Localhost"
    localhost: str = ""  # Localhost: the path relative to <root>/seccomp

    def __str__(self) -> str:
        return f"localhost/{self.localhost}" if self.kind == "Localhost" else self.kind


@record
class Filter:
    path: str  # the compiled program in the cache (recorded in the container's status)
    program: bytes  # struct sock_filter[]


def choice(pod: PodSpec, c: ContainerSpec) -> Choice:
    """The profile container `c` runs under: Kubernetes' precedence, the container's field over the pod's."""
    if c.security.privileged:
        return Choice("Unconfined")
    if c.security.seccomp:
        return Choice(c.security.seccomp, c.security.seccomp_localhost)
    if pod.seccomp:
        return Choice(pod.seccomp, pod.seccomp_localhost)
    return Choice("RuntimeDefault")


def for_container(root: str, pod: PodSpec, c: ContainerSpec, bounding: int) -> Filter | None:
    """The compiled filter of container `c` (None: unconfined), from the cache or compiled now.
    `bounding` is its capability bounding set, which the profile's capability rules test."""
    which = choice(pod, c)
    if which.kind == "Unconfined":
        return None
    if which.kind == "RuntimeDefault":
        with open(DEFAULT_PROFILE, "rb") as f:
            data = f.read()
    else:
        path = os.path.join(root, "seccomp", which.localhost)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ProfileProblem(f'cannot load seccomp profile "{path}": {e.strerror}') from None
    try:
        return compiled(root, data, bounding)
    except ProfileProblem as e:
        raise ProfileProblem(f"seccomp profile {which}: {e}") from None


def compiled(root: str, data: bytes, bounding: int) -> Filter:
    """The program for profile `data` under capabilities `bounding`: cached, or compiled and cached."""
    from nsbox._seccomp import lib

    v = lib.seccomp_version()
    key = hashlib.sha256(
        b"\0".join(
            [
                data,
                b"%x" % bounding,
                os.uname().machine.encode(),
                os.uname().release.encode(),  # minKernel rules
                b"%d.%d.%d" % (v.major, v.minor, v.micro),
            ]
        )
    ).hexdigest()
    cache = os.path.join(root, "cache", "seccomp")
    path = os.path.join(cache, f"{key}.bpf")
    try:
        with open(path, "rb") as f:
            program = f.read()
        if program and len(program) % BPF_INSN == 0:
            return Filter(path, program)
    except FileNotFoundError:
        pass
    program = compile_profile(data, bounding)
    os.makedirs(cache, 0o700, exist_ok=True)
    state.write_atomic(path, program)
    return Filter(path, program)


def read_filter(path: str) -> bytes:
    """A compiled program recorded in a container's status (for exec, hooks and probes)."""
    try:
        with open(path, "rb") as f:
            program = f.read()
    except OSError as e:
        raise NsboxError(f'the container\'s seccomp filter "{path}": {e.strerror}') from None
    if not program or len(program) % BPF_INSN:
        raise NsboxError(f'the container\'s seccomp filter "{path}" is damaged')
    return program


def _kernel_at_least(version: str) -> bool:
    def numbers(s: str) -> tuple[int, ...]:
        out = []
        for part in s.split("-")[0].split(".")[:3]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)

    return numbers(os.uname().release) >= numbers(version)


def _applies(rule: dict, caps: set[str], arch: str) -> bool:
    """moby's includes/excludes: every listed capability (bounding set) and an architecture
    in the list, a kernel at least minKernel; excluded by any listed capability or architecture."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise ProfileProblem("includes and excludes must be objects")
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"])):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if arch in (exc.get("arches") or []):
        return False
    return True


def _action(obj: dict, key: str, errno_key: str) -> int:
    name = obj.get(key)
    if name not in _ACTIONS:
        raise ProfileProblem(f"{key}: unsupported action {json.dumps(name)}")
    value = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        ret = obj.get(errno_key, errno.EPERM if name == "SCMP_ACT_ERRNO" else 0)
        if not isinstance(ret, int) or not 0 <= ret <= 0xFFFF:
            raise ProfileProblem(f"{errno_key}: must be a number from 0 to 65535")
        value |= ret
    return value


def compile_profile(data: bytes, bounding: int) -> bytes:
    """Profile `data` (OCI seccomp JSON) as a BPF program for capabilities `bounding`."""
    from nsbox import kube
    from nsbox._seccomp import ffi, lib

    try:
        profile = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ProfileProblem(f"not valid JSON: {e}") from None
    if not isinstance(profile, dict):
        raise ProfileProblem("not a JSON object")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list) or not all(isinstance(r, dict) for r in syscalls):
        raise ProfileProblem("syscalls: must be a list of objects")
    default = _action(profile, "defaultAction", "defaultErrnoRet")
    caps = {f"CAP_{name}" for name, num in kube.CAPABILITY_NUMBERS.items() if bounding >> num & 1}
    machine = os.uname().machine
    arch = _GO_ARCH.get(machine, machine)

    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise ProfileProblem("libseccomp refused the default action")
    try:
        lib.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_NNP, 0)  # nsbox's child decides (csrc/nsbox.c)
        for name in _architectures(profile, lib):
            token = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                raise ProfileProblem(f"unknown architecture {json.dumps(name)}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -errno.EEXIST:
                raise ProfileProblem(f"architecture {name}: {os.strerror(-rc)}")
        for i, rule in enumerate(syscalls):
            where = f"syscalls[{i}]"
            names = rule.get("names") or ([rule["name"]] if isinstance(rule.get("name"), str) else [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ProfileProblem(f"{where}.names: must be a list of strings")
            if not _applies(rule, caps, arch):
                continue
            action = _action(rule, "action", "errnoRet")
            for args in _argument_sets(rule.get("args") or [], where):
                cmp = ffi.new("struct scmp_arg_cmp[]", max(len(args), 1))
                for j, (index, op, value, value_two) in enumerate(args):
                    cmp[j].arg, cmp[j].op, cmp[j].datum_a, cmp[j].datum_b = index, op, value, value_two
                for name in names:
                    nr = lib.seccomp_syscall_resolve_name(name.encode())
                    if nr < 0:
                        continue  # a call this architecture (or libseccomp) does not know, as runc skips it
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmp)
                    if rc == -errno.EACCES:
                        continue  # the rule's action is the default action: nothing to add
                    if rc < 0:
                        raise ProfileProblem(f'{where}: system call "{name}": {os.strerror(-rc)}')
        fd = os.memfd_create("nsbox-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise ProfileProblem(f"exporting the filter: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if len(program) > BPF_MAXINSNS * BPF_INSN:
        raise ProfileProblem(f"the filter has {len(program) // BPF_INSN} instructions; the kernel takes {BPF_MAXINSNS}")
    return program


def _architectures(profile: dict, lib: Any) -> list[str]:
    """The architectures to filter: `architectures`, or the native one's entry of `archMap` with
    its sub-architectures; none listed means the native one only."""
    listed = profile.get("architectures") or []
    arch_map = profile.get("archMap") or []
    if not isinstance(listed, list) or not isinstance(arch_map, list):
        raise ProfileProblem("architectures and archMap must be lists")
    if listed:
        return [str(a) for a in listed]
    native = lib.seccomp_arch_native()
    for entry in arch_map:
        if not isinstance(entry, dict):
            raise ProfileProblem("archMap: must be a list of objects")
        name = str(entry.get("architecture", ""))
        if lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode()) == native:
            return [name, *[str(s) for s in entry.get("subArchitectures") or []]]
    return []


def _argument_sets(args: Any, where: str) -> list[list[tuple[int, int, int, int]]]:
    """A rule's argument conditions as libseccomp takes them: all in one rule (AND), or, when one
    argument is compared twice, one rule per condition (libseccomp cannot AND those; runc does the same)."""
    if not isinstance(args, list):
        raise ProfileProblem(f"{where}.args: must be a list")
    out = []
    for k, a in enumerate(args):
        if not isinstance(a, dict):
            raise ProfileProblem(f"{where}.args[{k}]: must be an object")
        index, op, value, value_two = a.get("index"), a.get("op"), a.get("value", 0), a.get("valueTwo", 0)
        if not isinstance(index, int) or not 0 <= index <= 5:
            raise ProfileProblem(f"{where}.args[{k}].index: must be 0 to 5")
        if op not in _OPS:
            raise ProfileProblem(f"{where}.args[{k}].op: unsupported operator {json.dumps(op)}")
        for v in (value, value_two):
            if not isinstance(v, int) or not 0 <= v < 1 << 64:
                raise ProfileProblem(f"{where}.args[{k}]: values must be unsigned 64-bit numbers")
        out.append((index, _OPS.index(op) + 1, value, value_two))
    if len({a[0] for a in out}) == len(out):
        return [out]
    return [[a] for a in out]
