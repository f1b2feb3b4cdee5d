"""What the double checks of agent-sandbox's extension objects (extensions.agents.x-k8s.io/
v1alpha1): the fields of SandboxTemplate, SandboxWarmPool and SandboxClaim as its API reference
lists them (kubernetes-sigs/agent-sandbox docs/api.md), required ones and enumerations. A field
the CRD does not know is refused (the API server's strict field validation), so a manifest the
back end writes with a misspelt or invented field fails here as it would on a cluster.
"""

from __future__ import annotations

from typing import Any

from tests.kubernetes.kube_store import ApiStatusError, JsonObject

_METADATA = {"labels", "annotations"}
_TEMPLATE_SPEC = {
    "podTemplate",
    "volumeClaimTemplates",
    "networkPolicy",
    "networkPolicyManagement",
    "envVarsInjectionPolicy",
    "service",
}
_POOL_SPEC = {"replicas", "sandboxTemplateRef", "ttlSecondsAfterCreated", "updateStrategy"}
_CLAIM_SPEC = {
    "sandboxTemplateRef",
    "ttlSecondsAfterCreated",
    "lifecycle",
    "warmpool",
    "additionalPodMetadata",
    "env",
}
_ENUMS = {
    "networkPolicyManagement": {"Managed", "Unmanaged"},
    "envVarsInjectionPolicy": {"Allowed", "Overrides", "Disallowed"},
}


def _invalid(kind: str, name: str, problem: str) -> ApiStatusError:
    return ApiStatusError(
        422, "Invalid", f'{kind}.extensions.agents.x-k8s.io "{name}" is invalid: {problem}'
    )


def _only(kind: str, name: str, where: str, obj: Any, known: set[str]) -> None:
    if not isinstance(obj, dict):
        raise _invalid(kind, name, f"{where}: must be an object")
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _invalid(kind, name, f'{where}: unknown field "{unknown[0]}"')


def _template_ref(kind: str, name: str, spec: JsonObject) -> None:
    ref = spec.get("sandboxTemplateRef")
    if ref is None:
        raise _invalid(kind, name, "spec.sandboxTemplateRef: Required value")
    _only(kind, name, "spec.sandboxTemplateRef", ref, {"name"})
    if not isinstance(ref.get("name"), str) or not ref["name"]:
        raise _invalid(kind, name, "spec.sandboxTemplateRef.name: Required value")


def _count(kind: str, name: str, spec: JsonObject, field: str, *, required: bool) -> None:
    value = spec.get(field)
    if value is None:
        if required:
            raise _invalid(kind, name, f"spec.{field}: Required value")
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _invalid(kind, name, f"spec.{field}: must be an integer >= 0")


def validate(plural: str, manifest: JsonObject) -> None:
    """Refuse what the v1alpha1 CRDs would refuse (422 Invalid)."""
    name = str((manifest.get("metadata") or {}).get("name", ""))
    kind = {"sandboxtemplates": "SandboxTemplate", "sandboxwarmpools": "SandboxWarmPool"}.get(
        plural, "SandboxClaim"
    )
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise _invalid(kind, name, "spec: Required value")
    if plural == "sandboxtemplates":
        _only(kind, name, "spec", spec, _TEMPLATE_SPEC)
        template = spec.get("podTemplate")
        if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            raise _invalid(kind, name, "spec.podTemplate.spec: Required value")
        _only(kind, name, "spec.podTemplate", template, {"metadata", "spec"})
        _only(kind, name, "spec.podTemplate.metadata", template.get("metadata") or {}, _METADATA)
        if "networkPolicy" in spec:
            _only(kind, name, "spec.networkPolicy", spec["networkPolicy"], {"ingress", "egress"})
        for field, allowed in _ENUMS.items():
            if field in spec and spec[field] not in allowed:
                raise _invalid(kind, name, f"spec.{field}: Unsupported value: {spec[field]!r}")
    elif plural == "sandboxwarmpools":
        _only(kind, name, "spec", spec, _POOL_SPEC)
        _count(kind, name, spec, "replicas", required=True)
        _count(kind, name, spec, "ttlSecondsAfterCreated", required=False)
        _template_ref(kind, name, spec)
        strategy = spec.get("updateStrategy")
        if strategy is not None:
            _only(kind, name, "spec.updateStrategy", strategy, {"type"})
            if strategy.get("type") not in (None, "Recreate", "OnReplenish"):
                raise _invalid(kind, name, "spec.updateStrategy.type: Unsupported value")
    else:
        _only(kind, name, "spec", spec, _CLAIM_SPEC)
        _template_ref(kind, name, spec)
        _count(kind, name, spec, "ttlSecondsAfterCreated", required=False)
        if "warmpool" in spec and not isinstance(spec["warmpool"], str):
            raise _invalid(kind, name, "spec.warmpool: must be a string")
        _only(
            kind,
            name,
            "spec.additionalPodMetadata",
            spec.get("additionalPodMetadata") or {},
            _METADATA,
        )
        for index, variable in enumerate(spec.get("env") or []):
            _only(kind, name, f"spec.env[{index}]", variable, {"name", "value", "containerName"})
            if not isinstance(variable.get("name"), str) or not isinstance(
                variable.get("value"), str
            ):
                raise _invalid(kind, name, f"spec.env[{index}]: name and value are required")
