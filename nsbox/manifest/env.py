"""A container's environment: env (values, the downward API, ConfigMap and
Secret keys) and envFrom, as the API server validates them (docs/lifecycle.md,
"Environment and downward API")."""

from __future__ import annotations

from .. import kube
from ..model import EnvFrom, EnvVar
from .policy import ENV_FIELD_ALIASES, ENV_FIELD_PATHS, ENV_META_FIELD
from .reader import PodContext, Reader, join


class EnvReader(Reader):
    """containers[*].env and envFrom."""

    def env(self, item: dict, where: str, ctx: PodContext) -> list[EnvVar]:
        out: list[EnvVar] = []
        defined: set[str] = set()
        for env_where, entry in self.objects(item, "env", where):
            self.fields(entry, "EnvVar", env_where)
            name = self.get(entry, "name", env_where, "string")
            if entry.get("name") in (None, ""):
                self.required(f"{env_where}.name")
            if not name:
                continue
            error = kube.env_var_name_error(name)
            if error:
                self.invalid(f"{env_where}.name", name, error)
            if name in defined:
                # API server warning (pkg/api/pod/warnings.go).
                self.warn(f'{env_where}: hides previous definition of "{name}", which may be dropped when using apply')
            defined.add(name)
            var = EnvVar(name=name, value=self.get(entry, "value", env_where, "string") or "")
            source = self.get(entry, "valueFrom", env_where, "object")
            if source is not None:
                source_where = f"{env_where}.valueFrom"
                if var.value:
                    self.invalid(source_where, "", "may not be specified when `value` is not empty")
                self.fields(source, "EnvVarSource", source_where)
                given = [
                    k
                    for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
                    if source.get(k) is not None
                ]
                if len(given) > 1:
                    self.invalid(source_where, "", "may not have more than one field specified at a time")
                ref = self.get(source, "fieldRef", source_where, "object")
                resource = self.get(source, "resourceFieldRef", source_where, "object")
                if ref is not None:
                    self.field_ref(ref, f"{source_where}.fieldRef", var, ctx)
                if resource is not None:
                    var.resource, var.resource_container, var.divisor = self.resource_field_ref(
                        resource, f"{source_where}.resourceFieldRef", in_volume=False
                    )
                for kind in ("configMap", "secret"):
                    key_ref = self.get(source, f"{kind}KeyRef", source_where, "object")
                    if key_ref is not None:
                        self.key_ref(key_ref, f"{source_where}.{kind}KeyRef", kind, var)
                if not any(v is not None for v in source.values()):
                    self.invalid(
                        source_where,
                        "",
                        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                    )
            out.append(var)
        return out

    def key_ref(self, ref: dict, where: str, kind: str, var: EnvVar) -> None:
        """configMapKeyRef / secretKeyRef (validateConfigMapKeySelector, validateSecretKeySelector)."""
        self.fields(ref, "ConfigMapKeySelector" if kind == "configMap" else "SecretKeySelector", where)
        name = self.get(ref, "name", where, "string") or ""
        for e in kube.dns1123_subdomain_errors(name):  # ValidateSecretName, also for ""
            self.invalid(f"{where}.name", name, e)
        key = self.get(ref, "key", where, "string") or ""
        if not key:
            self.required(f"{where}.key")
        for e in kube.config_key_errors(key) if key else ():
            self.invalid(f"{where}.key", key, e)
        var.ref_kind, var.ref_name, var.ref_key = kind, name, key
        var.optional = self.get(ref, "optional", where, "boolean") is True

    def env_from(self, item: dict, where: str) -> list[EnvFrom]:
        """envFrom: configMapRef or secretRef, with an optional prefix (validateEnvFrom)."""
        out: list[EnvFrom] = []
        for from_where, entry in self.objects(item, "envFrom", where):
            self.fields(entry, "EnvFromSource", from_where)
            prefix = self.get(entry, "prefix", from_where, "string") or ""
            if prefix:
                error = kube.env_var_name_error(prefix)
                if error:
                    self.invalid(f"{from_where}.prefix", prefix, error)
            given = [k for k in ("configMapRef", "secretRef") if entry.get(k) is not None]
            for key in given:
                ref_where = f"{from_where}.{key}"
                ref = self.get(entry, key, from_where, "object")
                if ref is None:
                    continue
                self.fields(ref, "ConfigMapEnvSource" if key == "configMapRef" else "SecretEnvSource", ref_where)
                name = self.get(ref, "name", ref_where, "string") or ""
                if not name:
                    self.required(f"{ref_where}.name")
                for e in kube.dns1123_subdomain_errors(name) if name else ():
                    self.invalid(f"{ref_where}.name", name, e)
                out.append(
                    EnvFrom(
                        kind="configMap" if key == "configMapRef" else "secret",
                        name=name,
                        prefix=prefix,
                        optional=self.get(ref, "optional", ref_where, "boolean") is True,
                    )
                )
            env_from_where = join(where, "envFrom")
            if not given:
                self.invalid(env_from_where, "", "must specify one of: `configMapRef` or `secretRef`")
            elif len(given) > 1:
                self.invalid(env_from_where, "", "may not have more than one field specified at a time")
        return out

    def field_ref(self, ref: dict, where: str, var: EnvVar, ctx: PodContext) -> None:
        self.fields(ref, "ObjectFieldSelector", where)
        api = self.get(ref, "apiVersion", where, "string")
        if api and api != "v1":
            self.unsupported(f"{where}.apiVersion", api, ("v1",))
        field = self.get(ref, "fieldPath", where, "string")
        if not field:
            self.required(f"{where}.fieldPath")
            return
        field = ENV_FIELD_ALIASES.get(field, field)
        meta = ENV_META_FIELD.fullmatch(field)
        if field in ENV_FIELD_PATHS:
            var.field_ref = field
        elif meta:
            # Labels and annotations of an nsbox pod never change: resolve them now.
            source = ctx.labels if meta.group(1) == "labels" else ctx.annotations
            var.value = source.get(meta.group(2), "")
        elif field == "spec.serviceAccountName":
            var.value = ctx.service_account  # fixed for the pod's life, as labels are
        else:
            self.unsupported(
                f"{where}.fieldPath",
                field,
                ENV_FIELD_PATHS
                + (
                    "metadata.labels['<KEY>']",
                    "metadata.annotations['<KEY>']",
                    "status.podIPs",
                    "spec.serviceAccountName",
                ),
            )
