"""Leases: which pods use which images, recorded in the host-wide store.

Pods live in many roots and the store is shared by all of them, so the store
keeps one file per holder (a pod, named by its root and UID): `leases/<key>.json`
with the root, the pod UID, the image ids it uses and their layer digests (so a
pod keeps its layers even if its image's tag moves on). A lease is live while
`<root>/pods/<uid>` exists: a crashed pod's lease goes stale by itself and is
removed when seen (docs/images.md, "Leases").
"""

from __future__ import annotations

import hashlib
import os

from nsbox.state import read_json, write_json

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


class Lease:
    def __init__(self, path: str, doc: dict[str, Any]):
        self.path = path
        self.holder: str = doc.get("holder", "")
        self.root: str = doc.get("root", "")
        self.pod_uid: str = doc.get("podUID", "")
        self.image_ids: list[str] = list(doc.get("imageIDs", []))
        self.layers: list[str] = list(doc.get("layers", []))

    def live(self) -> bool:
        return bool(self.root and self.pod_uid) and os.path.isdir(os.path.join(self.root, "pods", self.pod_uid))

    def pod_name(self) -> str:
        """NAMESPACE/NAME from the pod's own state, else its UID."""
        spec = read_json(os.path.join(self.root, "pods", self.pod_uid, "pod.json"))
        if isinstance(spec, dict) and spec.get("name"):
            return f"{spec.get('namespace') or 'default'}/{spec['name']}"
        return self.pod_uid


class Leases:
    """The `leases/` directory of a store."""

    def __init__(self, store: str):
        self.dir = os.path.join(store, "leases")

    def _path(self, holder: str) -> str:
        return os.path.join(self.dir, hashlib.sha256(holder.encode()).hexdigest()[:32] + ".json")

    def write(self, holder: str, root: str, pod_uid: str, image_ids: list[str], layers: list[str]) -> None:
        os.makedirs(self.dir, exist_ok=True)
        doc = {"holder": holder, "root": os.path.abspath(root), "podUID": pod_uid, "imageIDs": image_ids}
        write_json(self._path(holder), {**doc, "layers": layers})

    def remove(self, holder: str) -> None:
        try:
            os.unlink(self._path(holder))
        except FileNotFoundError:
            pass

    def live(self) -> list[Lease]:
        """The live leases; stale ones (their pod directory gone) are removed on the way."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        leases = []
        for name in names:
            path = os.path.join(self.dir, name)
            if not name.endswith(".json"):
                continue
            doc = read_json(path)
            lease = Lease(path, doc if isinstance(doc, dict) else {})
            if lease.live():
                leases.append(lease)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return leases
