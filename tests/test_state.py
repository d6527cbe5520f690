"""State on disk: removing a pod's trees never reaches into a mount (docs/design.md §10)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Run in a private mount namespace (unshare -m): the bind mount never touches the host's.
REMOVE_THROUGH_A_BIND = textwrap.dedent(
    """
    import os, subprocess, sys
    from nsbox.errors import NsboxError
    from nsbox.state import remove_tree

    base = sys.argv[1]
    keep, tree = f"{base}/keep", f"{base}/tree"
    os.makedirs(keep)
    os.makedirs(f"{tree}/volumes/v")
    with open(f"{keep}/data", "w") as f:
        f.write("precious")
    # A bind mount of a directory of the same file system: st_dev does not change below it.
    subprocess.run(["mount", "--bind", keep, f"{tree}/volumes/v"], check=True)
    try:
        remove_tree(tree)
    except NsboxError as e:
        print("refused:", e)
    print("data:", open(f"{keep}/data").read())
    subprocess.run(["umount", f"{tree}/volumes/v"], check=True)
    remove_tree(tree)
    print("after umount:", os.path.exists(tree))
    """
)


def test_remove_tree_refuses_a_tree_with_a_bind_mount_below_and_keeps_the_mounted_data(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", REMOVE_THROUGH_A_BIND, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    tree = tmp_path / "tree"
    assert out.stdout.splitlines() == [
        f"refused: refusing to remove {tree}: {tree}/volumes/v is a mount point",
        "data: precious",
        "after umount: False",
    ]
