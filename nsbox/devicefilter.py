"""The cgroup v2 device filter: an eBPF program that allows a list of devices.

cgroup v2 has no `devices` controller. The kernel instead asks a
BPF_PROG_TYPE_CGROUP_DEVICE program attached to the process's cgroup (in the
cgroup2 hierarchy) on every open and mknod of a device node; the program
returns 1 to allow, 0 to deny (EPERM). runc, crun and systemd do the same
(runc: libcontainer/cgroups/devices/ebpf_linux.go and devicefilter).

The program is assembled here from the rules, instruction by instruction (no
compiler, no libbpf), loaded with bpf(BPF_PROG_LOAD) and attached with
bpf(BPF_PROG_ATTACH). Once attached, the cgroup keeps the program alive; it
goes with the cgroup. Attaching without BPF_F_ALLOW_MULTI replaces our own
program when a restarted container's cgroup is set up again.

Imported only when a cgroup v2 container is created: ctypes stays off the CLI's
start-up path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# include/uapi/linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2

# The bpf(2) system call number (glibc has no wrapper).
SYS_BPF = {"x86_64": 321, "aarch64": 280}

# Instruction encoding (include/uapi/linux/bpf_common.h, bpf.h).
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_ALU32_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_ALU32_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_ALU64_MOV_X = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_ALU64_MOV_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JMP32_JNE_K = 0x56  # BPF_JMP32 | BPF_JNE | BPF_K
_JMP32_JNE_X = 0x5E  # BPF_JMP32 | BPF_JNE | BPF_X
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

_ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def parse_rule(rule: str) -> tuple[str, int | None, int | None, int]:
    """A devices.allow line ("c 1:3 rwm", "c 136:* rwm", "a") -> (type, major, minor, access mask);
    None is a wildcard; type "a" is any."""
    parts = rule.split()
    if parts[0] == "a":
        return "a", None, None, BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE
    kind, numbers, access = parts
    major, minor = numbers.split(":")
    mask = 0
    for ch in access:
        mask |= _ACCESS[ch]
    return kind, None if major == "*" else int(major), None if minor == "*" else int(minor), mask


def program(rules: list[str]) -> bytes:
    """The instructions of a filter allowing exactly `rules` (devices.allow syntax); all else is denied.

    The context (struct bpf_cgroup_dev_ctx) is {u32 access_type; u32 major; u32 minor},
    access_type = access << 16 | device type. Each rule is one block that jumps to
    the next block on any mismatch and returns 1 when everything matched.
    """
    # r2 = type, r3 = requested access, r4 = major, r5 = minor
    code = [
        _insn(_LDX_MEM_W, 2, 1, 0),
        _insn(_ALU32_AND_K, 2, imm=0xFFFF),
        _insn(_LDX_MEM_W, 3, 1, 0),
        _insn(_ALU32_RSH_K, 3, imm=16),
        _insn(_LDX_MEM_W, 4, 1, 4),
        _insn(_LDX_MEM_W, 5, 1, 8),
    ]
    for rule in rules:
        kind, major, minor, access = parse_rule(rule)
        checks: list[tuple[int, int, int, int]] = []  # (code, dst, src, imm): jump to next rule if taken
        if kind != "a":
            checks.append((_JMP32_JNE_K, 2, 0, _TYPES[kind]))
        # The requested access must be within the rule's: (r3 & access) == r3.
        block = [_insn(_ALU64_MOV_X, 1, 3), _insn(_ALU32_AND_K, 1, imm=access)]
        checks.append((_JMP32_JNE_X, 1, 3, 0))
        if major is not None:
            checks.append((_JMP32_JNE_K, 4, 0, major))
        if minor is not None:
            checks.append((_JMP32_JNE_K, 5, 0, minor))
        # Layout: [type check] mov, and, [access check] [major] [minor] r0=1 exit.
        tail = 2  # r0 = 1; exit
        body: list[bytes] = []
        jumps = checks[1:] if kind != "a" else checks
        for i, (op, dst, src, imm) in enumerate(jumps):
            remaining = len(jumps) - i - 1
            body.append(_insn(op, dst, src, off=remaining + tail, imm=imm))
        if kind != "a":
            op, dst, src, imm = checks[0]
            code.append(_insn(op, dst, src, off=len(block) + len(body) + tail, imm=imm))
        code += block + body
        code += [_insn(_ALU64_MOV_K, 0, imm=1), _insn(_EXIT)]
    code += [_insn(_ALU64_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(code)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(attr, len(attr))
    result = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def load(rules: list[str]) -> int:
    """Load the filter for `rules`; returns the program's fd."""
    insns = ctypes.create_string_buffer(program(rules))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    # log_size, log_buf, kern_version, prog_flags, prog_name[16]; the rest zero.
    attr = struct.pack(
        "<IIQQIIQII16s",
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(insns.raw) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license),
        0,
        0,
        0,
        0,
        0,
        b"nsbox_devices",
    )
    return _bpf(BPF_PROG_LOAD, attr.ljust(128, b"\0"))


def attach(cgroup_dir: str, rules: list[str]) -> None:
    """Allow only `rules` to the processes of the cgroup v2 directory `cgroup_dir` (and below)."""
    prog = load(rules)
    try:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", cg, prog, BPF_CGROUP_DEVICE, 0).ljust(32, b"\0"))
        finally:
            os.close(cg)
    finally:
        os.close(prog)
