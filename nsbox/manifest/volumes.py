"""Pod volumes (emptyDir, hostPath, configMap, secret, downwardAPI, projected)
and a container's volumeMounts, as the API server validates them (docs/manifests.md)."""

from __future__ import annotations

from .. import kube
from ..model import DownwardFile, KeyToPath, Projection, Volume, VolumeMount
from .policy import (
    CONFIG_VOLUME_KINDS,
    EMPTY_DIR_MEDIA,
    ENV_META_FIELD,
    HOST_PATH_TYPES,
    PROJECTION_TYPES,
    REJECTED,
    VOLUME_FIELD_PATHS,
    VOLUME_SOURCE_TYPES,
)
from .reader import Reader, show


class VolumeReader(Reader):
    """spec.volumes[*] and containers[*].volumeMounts."""

    def volume(self, item: dict, where: str, seen: set[str]) -> Volume | None:
        """One volume; its name is added to `seen` (the names of the volumes read before)."""
        self.fields(item, "Volume", where)
        name = self.name(item, where, seen)
        rejected = any(f"Volume.{k}" in REJECTED and v is not None for k, v in item.items())
        # In the API server's order (validateVolumeSource): the second one found is reported.
        sources = [
            k
            for k in ("emptyDir", "hostPath", "secret", "downwardAPI", "configMap", "projected")
            if item.get(k) is not None
        ]
        if len(sources) > 1:
            self.problem(f"{where}.{sources[1]}: Forbidden: may not specify more than 1 volume type")
            return None
        if rejected or name is None:
            return None
        volume = Volume(name=name)
        if sources and sources[0] in CONFIG_VOLUME_KINDS:
            return self.config_volume(item, sources[0], where, volume)
        if sources == ["hostPath"]:
            source = self.get(item, "hostPath", where, "object")
            if source is None:
                return None
            path = f"{where}.hostPath"
            self.fields(source, "HostPathVolumeSource", path)
            host_path = self.get(source, "path", path, "string")
            if host_path is None or host_path == "":
                self.required(f"{path}.path")
            elif not host_path.startswith("/"):
                self.invalid(f"{path}.path", host_path, "must be an absolute path")
            elif ".." in host_path.split("/"):
                self.invalid(f"{path}.path", host_path, "must not contain '..'")
            kind = self.get(source, "type", path, "string") or ""
            if kind not in HOST_PATH_TYPES:
                self.unsupported(f"{path}.type", kind, HOST_PATH_TYPES)
            volume.kind, volume.host_path, volume.host_path_type = "hostPath", host_path or "", kind
            return volume
        # emptyDir, also when no source is given (API server SetDefaults_Volume).
        source = self.get(item, "emptyDir", where, "object") if sources else {}
        if source is None:
            return None
        path = f"{where}.emptyDir"
        self.fields(source, "EmptyDirVolumeSource", path)
        medium = self.get(source, "medium", path, "string") or ""
        if medium not in EMPTY_DIR_MEDIA:
            self.unsupported(f"{path}.medium", medium, EMPTY_DIR_MEDIA)
        volume.medium = medium
        if source.get("sizeLimit") is not None:
            volume.size_limit = self.quantity(source["sizeLimit"], f"{path}.sizeLimit", kube.parse_memory)
        return volume

    def config_volume(self, item: dict, kind: str, where: str, volume: Volume) -> Volume | None:
        """A configMap, secret, downwardAPI or projected volume (README, "ConfigMaps, Secrets
        and the downward API"); the API server's rules (validateConfigMapVolumeSource & co.)."""
        path = f"{where}.{kind}"
        source = self.get(item, kind, where, "object")
        if source is None:
            return None
        volume.kind = kind
        self.fields(source, VOLUME_SOURCE_TYPES[kind], path)
        volume.default_mode = self.file_mode(source, "defaultMode", path)
        if kind == "projected":
            # validateProjectionSources: every path once across the sources, one kind per source.
            paths: set[str] = set()
            for source_where, projection in self.objects(source, "sources", path):
                self.fields(projection, "VolumeProjection", source_where)
                given = [k for k in ("secret", "configMap", "downwardAPI") if projection.get(k) is not None]
                for k in given:
                    p = self.projection(projection, k, source_where, projected=True)
                    if p is None:
                        continue
                    for entry in p.items or p.files:
                        if entry.path and entry.path in paths:
                            self.invalid(
                                path, entry.path if k == "downwardAPI" else p.name, "conflicting duplicate paths"
                            )
                        paths.add(entry.path)
                    volume.sources.append(p)
                if len(given) > 1:
                    self.problem(f"{source_where}: Forbidden: may not specify more than 1 volume type")
        else:
            p = self.projection(item, kind, where, projected=False)
            if p is not None:
                volume.sources.append(p)
        return volume

    def projection(self, parent: dict, kind: str, where: str, *, projected: bool) -> Projection | None:
        source = self.get(parent, kind, where, "object")
        if source is None:
            return None
        path = f"{where}.{kind}"
        if projected:
            self.fields(source, PROJECTION_TYPES[kind], path)
        if kind == "downwardAPI":
            files = []
            for _file_where, entry in self.objects(source, "items", path):
                f = self.downward_file(entry, path)  # validateDownwardAPIVolumeFile names no index
                if f is not None:
                    files.append(f)
            return Projection(kind="downwardAPI", files=files)
        key = "secretName" if kind == "secret" and not projected else "name"
        name = self.get(source, key, path, "string") or ""
        if not name:
            self.required(f"{path}.{key}")
        optional = self.get(source, "optional", path, "boolean") is True
        items = []
        for item_where, entry in self.objects(source, "items", path):
            self.fields(entry, "KeyToPath", item_where)
            key_name = self.get(entry, "key", item_where, "string") or ""
            if not key_name:
                self.required(f"{item_where}.key")
            file_path = self.local_path(entry, item_where)
            items.append(KeyToPath(key=key_name, path=file_path or "", mode=self.file_mode(entry, "mode", item_where)))
        return Projection(kind=kind, name=name, items=items, optional=optional)

    def downward_file(self, entry: dict, where: str) -> DownwardFile | None:
        self.fields(entry, "DownwardAPIVolumeFile", where)
        out = DownwardFile(path=self.local_path(entry, where) or "", mode=self.file_mode(entry, "mode", where))
        field_ref = self.get(entry, "fieldRef", where, "object")
        resource_ref = self.get(entry, "resourceFieldRef", where, "object")
        if field_ref is not None:
            ref_where = f"{where}.fieldRef"
            self.fields(field_ref, "ObjectFieldSelector", ref_where)
            api = self.get(field_ref, "apiVersion", ref_where, "string")
            if api and api != "v1":
                self.unsupported(f"{ref_where}.apiVersion", api, ("v1",))
            field_path = self.get(field_ref, "fieldPath", ref_where, "string")
            if not field_path:
                self.required(f"{ref_where}.fieldPath")
            elif field_path in VOLUME_FIELD_PATHS or ENV_META_FIELD.fullmatch(field_path):
                out.field_ref = field_path
            else:
                self.unsupported(f"{ref_where}.fieldPath", field_path, VOLUME_FIELD_PATHS)
            if resource_ref is not None:
                self.invalid(where, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously")
        elif resource_ref is not None:
            out.resource, out.container, out.divisor = self.resource_field_ref(
                resource_ref, f"{where}.resourceFieldRef", in_volume=True
            )
        else:
            self.required(where, "one of fieldRef and resourceFieldRef is required")
        return out

    def volume_mounts(self, item: dict, where: str, volume_names: frozenset[str]) -> list[VolumeMount]:
        out: list[VolumeMount] = []
        paths: set[str] = set()
        for mount_where, entry in self.objects(item, "volumeMounts", where):
            self.fields(entry, "VolumeMount", mount_where)
            name = self.get(entry, "name", mount_where, "string")
            if not name:
                self.required(f"{mount_where}.name")
            elif name not in volume_names:
                self.problem(f"{mount_where}.name: Not found: {show(name)}")
            mount_path = self.get(entry, "mountPath", mount_where, "string")
            if not mount_path:
                self.required(f"{mount_where}.mountPath")
            elif not mount_path.startswith("/"):
                self.invalid(f"{mount_where}.mountPath", mount_path, "must be an absolute path")
            elif mount_path.rstrip("/") in paths:
                self.invalid(f"{mount_where}.mountPath", mount_path, "must be unique")
            else:
                paths.add(mount_path.rstrip("/"))
            sub_path = self.get(entry, "subPath", mount_where, "string") or ""
            if sub_path.startswith("/"):
                self.invalid(f"{mount_where}.subPath", sub_path, "must be a relative path")
            elif ".." in sub_path.split("/"):
                self.invalid(f"{mount_where}.subPath", sub_path, "must not contain '..'")
            read_only = self.get(entry, "readOnly", mount_where, "boolean") is True
            out.append(
                VolumeMount(name=name or "", mount_path=mount_path or "", read_only=read_only, sub_path=sub_path)
            )
        return out
