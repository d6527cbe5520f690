"""What nsbox does to the files of a pod's volumes: ownership by the pod's fsGroup.

The kubelet's rule (pkg/volume/volume_linux.go, SetVolumeOwnership), for the
volumes whose ownership it manages — emptyDir, configMap, secret, downwardAPI,
projected; never hostPath: every file and directory gets the fsGroup as its
group; files gain group read (and write, unless the volume is read-only),
directories also group search and the setgid bit, so that new files inherit
the group. Symbolic links get the group and keep their mode. With
`fsGroupChangePolicy: OnRootMismatch` the walk is skipped when the volume's
top directory already has the group, those permissions and setgid.
"""

from __future__ import annotations

import os
import stat

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


def set_volume_ownership(path: str, fs_group: int | None, *, read_only: bool = False, policy: str = "") -> None:
    """Give the tree at `path` to `fs_group` as the kubelet does; nothing when fs_group is None."""
    if fs_group is None:
        return
    if policy == "OnRootMismatch" and not _root_mismatch(path, fs_group, read_only):
        return
    mask = RO_MASK if read_only else RW_MASK
    _change(path, fs_group, mask)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            _change(os.path.join(dirpath, name), fs_group, mask)


def _change(path: str, gid: int, mask: int) -> None:
    os.lchown(path, -1, gid)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | EXEC_MASK
    os.chmod(path, stat.S_IMODE(st.st_mode) | mask)


def _root_mismatch(path: str, gid: int, read_only: bool) -> bool:
    """Whether the volume's top directory lacks what the walk would give it."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    if st.st_gid != gid or not stat.S_ISDIR(st.st_mode):
        return True
    want = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return (st.st_mode & want) != want or not st.st_mode & stat.S_ISGID
