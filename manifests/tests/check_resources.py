#!/usr/bin/env python3
"""Validate the custom resources that kubernetes-validate cannot know.

kubernetes-validate only ships the schemas of built-in kinds. This script checks
the other kinds found in YAML streams (files, or "-" for stdin):

* WebSocketCluster (wsring.io), and any kind whose CRD is given with --crd
  (repeatable; e.g. the Gateway API's Gateway and HTTPRoute in the examples):
  against the openAPIV3Schema of the served version, the way the API server
  with strict field validation (kubectl's default) would: unknown fields are
  errors, `nullable`, `x-kubernetes-int-or-string` and
  `x-kubernetes-preserve-unknown-fields` are honoured. CEL rules
  (x-kubernetes-validations) are not evaluated: they are counted and reported.
  On top, for WebSocketClusters, metadata.name must be a DNS-1035 label of at
  most 50 characters (the CRD's CEL rule says the same), because
  the operator creates a Service with that name and one named "NAME-router-admin",
  and spec.template (kept as free-form object by the CRD) must be a valid core/v1
  PodTemplateSpec (kubernetes-validate, strict).
* ServiceMonitor and PodMonitor (monitoring.coreos.com/v1): against the subset of
  the Prometheus Operator schema that the chart uses, with unknown fields rejected.

Built-in kinds are skipped (kubernetes-validate checks them). Any other kind is an
error, so that a new custom kind in the chart cannot slip through unchecked.

With --expect-invalid every file must hold exactly one custom resource that is
rejected; a line "# expect: TEXT" in the file requires TEXT in one of the errors
("path: message"), so a fixture cannot pass by failing for the wrong reason.

Exit status: 0 when everything is as expected, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import jsonschema
import yaml

try:  # Present in .ci/validate-k8s.sh's venv; without it spec.template is not checked.
    from kubernetes_validate import utils as kv_utils
except ImportError:  # pragma: no cover
    kv_utils = None

# Kubernetes version whose PodTemplateSpec schema checks spec.template.
K8S_VERSION = "1.34.0"

WSC_GROUP = "wsring.io"
WSC_KIND = "WebSocketCluster"
# Service "NAME-router-admin" must stay a 63-character DNS label.
MAX_CLUSTER_NAME = 50
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# Built-in API groups: kubernetes-validate covers these.
BUILTIN_GROUPS = {
    "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io",
    "rbac.authorization.k8s.io", "apiextensions.k8s.io", "coordination.k8s.io",
    "discovery.k8s.io", "events.k8s.io", "scheduling.k8s.io", "storage.k8s.io",
    "admissionregistration.k8s.io", "certificates.k8s.io", "node.k8s.io",
}

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
_ENDPOINT_COMMON = {
    "port": {"type": "string"},
    "path": {"type": "string"},
    "scheme": {"enum": ["http", "https"]},
    "interval": _DURATION,
    "scrapeTimeout": _DURATION,
    "honorLabels": {"type": "boolean"},
}


def _monitor_schema(kind: str, endpoints_field: str, extra: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints_field],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": _NAMESPACE_SELECTOR,
                    "selector": _LABEL_SELECTOR,
                    endpoints_field: {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": _ENDPOINT_COMMON,
                        },
                    },
                    **extra,
                },
            },
        },
    }


# The Prometheus Operator fields (monitoring.coreos.com/v1) the chart renders.
MONITOR_SCHEMAS = {
    "ServiceMonitor": _monitor_schema(
        "ServiceMonitor", "endpoints", {"targetLabels": {"type": "array", "items": {"type": "string"}}}
    ),
    "PodMonitor": _monitor_schema(
        "PodMonitor", "podMetricsEndpoints", {"podTargetLabels": {"type": "array", "items": {"type": "string"}}}
    ),
}


def openapi_to_jsonschema(node: Any, cel_rules: list[str]) -> Any:
    """Turn a CRD structural schema (OpenAPI v3.0 dialect) into JSON Schema
    (draft 2020-12) with the API server's strict semantics."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: openapi_to_jsonschema(v, cel_rules) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value, cel_rules)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(v, cel_rules) for v in value]
        elif key == "x-kubernetes-validations":
            cel_rules.extend(rule.get("rule", "?") for rule in value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "description", "example", "externalDocs"):
            continue
        else:
            out[key] = value

    # OpenAPI 3.0 boolean exclusive bounds -> JSON Schema numeric ones.
    for bound, excl in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(excl) is True:
            out[excl] = out.pop(bound)
        elif out.get(excl) is False:
            del out[excl]
    if out.get("format") == "int32" and out.get("type") == "integer":
        out.setdefault("minimum", -(2**31))
        out.setdefault("maximum", 2**31 - 1)

    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    # Strict field validation: an object with declared properties rejects others,
    # unless the schema keeps unknown fields.
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        if "properties" in out:
            out["additionalProperties"] = False
        else:
            # `type: object` with neither properties nor preserve-unknown-fields is
            # pruned to {} by the API server: strict validation reports any field.
            out["maxProperties"] = 0
    if node.get("nullable"):
        # Widen in place rather than wrapping in anyOf, so errors keep their path.
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


@dataclass
class Crd:
    group: str
    kind: str
    schemas: dict[str, dict] = field(default_factory=dict)  # served version -> JSON Schema
    cel_rules: list[str] = field(default_factory=list)


def load_crds(path: str) -> list[Crd]:
    """Every CustomResourceDefinition in the YAML stream at `path`."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    crds = [crd_of(path, d["spec"]) for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise SystemExit(f"{path}: no CustomResourceDefinition")
    return crds


def crd_of(path: str, spec: dict) -> Crd:
    crd = Crd(group=spec["group"], kind=spec["names"]["kind"])
    for version in spec["versions"]:
        if not version.get("served", False):
            continue
        schema = openapi_to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]), crd.cel_rules)
        # apiVersion/kind/metadata are checked by the API server itself.
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"const": f"{crd.group}/{version['name']}"}
        props["kind"] = {"const": crd.kind}
        props["metadata"] = {"type": "object"}
        crd.schemas[version["name"]] = schema
    if not crd.schemas:
        raise SystemExit(f"{path}: no served version")
    return crd


def errors_of(validator: jsonschema.protocols.Validator, doc: dict) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{path}: {err.message}")
    return out


def check_document(doc: dict, crds: dict[tuple[str, str], Crd]) -> tuple[str, list[str]] | None:
    """(kind, errors) for a custom resource, None for a built-in kind."""
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc.get("kind", ""))
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    if group in BUILTIN_GROUPS:
        return None
    if kind in MONITOR_SCHEMAS and group == "monitoring.coreos.com":
        validator = jsonschema.Draft202012Validator(MONITOR_SCHEMAS[kind])
        return kind, errors_of(validator, doc)
    crd = crds.get((group, kind))
    if crd is None and kind == WSC_KIND and group == WSC_GROUP:
        return kind, ["no CRD given (--crd): cannot validate"]
    if crd is not None:
        version = api_version.rpartition("/")[2]
        if version not in crd.schemas:
            return kind, [f"apiVersion: {api_version} is not served (served: {sorted(crd.schemas)})"]
        errors = errors_of(jsonschema.Draft202012Validator(crd.schemas[version]), doc)
        if kind != WSC_KIND or group != WSC_GROUP:
            return kind, errors
        name = str((doc.get("metadata") or {}).get("name", ""))
        if not DNS1035.match(name) or len(name) > MAX_CLUSTER_NAME:
            errors.append(
                f"metadata.name: {name!r} must be a DNS-1035 label of at most {MAX_CLUSTER_NAME} characters "
                "(the operator creates Services NAME and NAME-router-admin)"
            )
        errors.extend(pod_template_errors((doc.get("spec") or {}).get("template")))
        return kind, errors
    return kind, [f"{api_version} {kind} is neither built in nor known to this checker"]


def pod_template_errors(template: Any) -> list[str]:
    """spec.template checked as the template of a core/v1 PodTemplate."""
    if template is None or kv_utils is None:
        return []
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    try:
        kv_utils.validate(wrapper, K8S_VERSION, strict=True)
    except kv_utils.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        return [f"spec.{path}: {err.message} (core/v1 PodTemplateSpec, Kubernetes {K8S_VERSION})"]
    return []


def read_stream(path: str) -> tuple[str, list[dict]]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return text, [d for d in yaml.safe_load_all(text) if d]


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crd", action="append", default=[],
                        help="a file of CRDs (repeatable); without crds/websocketcluster.yaml WebSocketClusters are errors")
    parser.add_argument("--expect-invalid", action="store_true",
                        help="every file holds one custom resource that must be rejected")
    parser.add_argument("files", nargs="+", help="YAML files, '-' for stdin")
    args = parser.parse_args(argv)

    crds = {(c.group, c.kind): c for path in args.crd for c in load_crds(path)}
    failures = checked = 0
    for path in args.files:
        text, docs = read_stream(path)
        results = [(doc, check_document(doc, crds)) for doc in docs]
        custom = [(doc, r) for doc, r in results if r is not None]
        if args.expect_invalid:
            expects = re.findall(r"^#\s*expect:\s*(.+?)\s*$", text, re.MULTILINE)
            if len(custom) != 1:
                print(f"FAIL {path}: a negative fixture must hold exactly one custom resource, found {len(custom)}")
                failures += 1
                continue
            doc, (_, errors) = custom[0]
            checked += 1
            missing = [e for e in expects if not any(e in err for err in errors)]
            if not errors:
                print(f"FAIL {path}: {name_of(doc)} was accepted but must be rejected")
                failures += 1
            elif missing:
                print(f"FAIL {path}: {name_of(doc)} rejected, but not for {missing}: {errors}")
                failures += 1
            else:
                print(f"ok   {path}: {name_of(doc)} rejected: {errors[0]}")
            continue
        for doc, (kind, errors) in custom:
            checked += 1
            if errors:
                failures += 1
                for err in errors:
                    print(f"FAIL {path}: {name_of(doc)}: {err}")
            else:
                print(f"ok   {path}: {name_of(doc)}")

    cel_rules = sum(len(c.cel_rules) for c in crds.values())
    if cel_rules:
        print(f"note: {cel_rules} CEL rule(s) of the CRDs not evaluated here (the API server does)")
    print(f"custom resources: {checked} checked, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
