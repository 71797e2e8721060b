"""A Kubernetes platform's ``kubernetes:`` section of the registry (``connection: kubernetes``):
where coord's Jobs go (kubeconfig and context, or in-cluster; the namespace), what each one
asks for (image, resources, GPUs, node selector, tolerations, priority class), and the
volume that holds the data, the checkpoints and the attempts' files (docs/kubernetes.md).

Every value is checked here, with the key named, so that a Job the API server would refuse
is refused before any trial, as the registry's error."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coordinator.config.yamlcfg import Section

# RFC 1123 names, as the API server checks them (namespaces, claims, secrets, accounts)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Kubernetes quantities: 500m, 2, 1.5, 4Gi, 512Mi, 1e3
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e\d+)?$")
# a label key (optional DNS prefix, '/', a name) and value, as the API server checks them
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")  # registry/name:tag or @sha256:...
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
OPERATORS = ("Equal", "Exists")


@dataclass(frozen=True)
class Toleration:
    key: str | None
    operator: str
    value: str | None
    effect: str | None

    def manifest(self) -> dict[str, str]:
        out = {"operator": self.operator}
        for name in ("key", "value", "effect"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class KubeOptions:
    image: str
    namespace: str = "default"
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config, unless in_cluster
    context: str | None = None
    in_cluster: bool = False  # coord itself runs in a pod: the service account's token
    volume_claim: str | None = None  # a PersistentVolumeClaim holding data, checkpoints, attempts
    host_path: str | None = None  # or a directory on every node (single-node clusters, kind)
    mount_path: str = "/coord"
    cpu_request: str = "1"
    cpu_limit: str | None = None
    memory_request: str = "1Gi"
    memory_limit: str | None = None
    gpus: int = 0  # nvidia.com/gpu per Job
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    priority_class: str | None = None
    service_account: str | None = None
    ttl_s: int = 3600  # ttlSecondsAfterFinished: finished Jobs go away by themselves
    image_pull_secrets: tuple[str, ...] = ()
    grace_s: int = 30  # terminationGracePeriodSeconds: the SIGTERM-to-SIGKILL time to checkpoint in
    source: str = ""  # the registry file, for errors that name its keys
    key_path: str = ""  # platforms.<name>.kubernetes

    def key(self, name: str) -> str:
        return f"{self.key_path}.{name}"


def parse_kube(sec: Section, key_path: str) -> KubeOptions:
    def name(key: str, pattern: re.Pattern[str], what: str, default: Any = None) -> Any:
        value = sec.get(key, str, default)
        if value is not None and not pattern.match(value):
            raise sec.fail(key, f"{value!r} is not a valid {what} (lower-case letters, digits and '-', "
                                "starting and ending with a letter or digit)")
        return value

    def quantity(key: str, default: str | None) -> str | None:
        value = sec.get(key, (str, int, float), default)
        if value is not None and not _QUANTITY.match(str(value)):
            raise sec.fail(key, f"{value!r} is not a Kubernetes quantity (e.g. 500m or 2 CPUs; 512Mi or 4Gi)")
        return None if value is None else str(value)

    image = sec.get("image", str)
    if not _IMAGE.match(image):
        raise sec.fail("image", f"{image!r} is not an image reference (e.g. ghcr.io/lab/coord-trials:1.0)")
    claim = name("volume_claim", _DNS_SUBDOMAIN, "PersistentVolumeClaim name")
    host_path = sec.get("host_path", str, None)
    if claim is None and host_path is None:
        raise sec.fail("volume_claim", "a Kubernetes platform needs a volume for data and checkpoints: "
                                       "volume_claim (a PersistentVolumeClaim) or host_path")
    if claim is not None and host_path is not None:
        raise sec.fail("host_path", "give volume_claim or host_path, not both")
    for key, value in (("host_path", host_path), ("mount_path", sec.get("mount_path", str, "/coord"))):
        if value is not None and (not value.startswith("/") or value.rstrip("/") == "" or ":" in value):
            raise sec.fail(key, f"{value!r} is not an absolute directory path (and not '/')")
    opts = KubeOptions(
        image=image, namespace=name("namespace", _DNS_LABEL, "namespace", "default"),
        kubeconfig=sec.get("kubeconfig", str, None), context=sec.get("context", str, None),
        in_cluster=sec.get("in_cluster", bool, False),
        volume_claim=claim, host_path=None if host_path is None else host_path.rstrip("/"),
        mount_path=sec.get("mount_path", str, "/coord").rstrip("/"),
        cpu_request=quantity("cpu_request", "1") or "1", cpu_limit=quantity("cpu_limit", None),
        memory_request=quantity("memory_request", "1Gi") or "1Gi", memory_limit=quantity("memory_limit", None),
        gpus=sec.get("gpus", int, 0, minimum=0), node_selector=_node_selector(sec),
        tolerations=_tolerations(sec), priority_class=name("priority_class", _DNS_SUBDOMAIN, "PriorityClass name"),
        service_account=name("service_account", _DNS_SUBDOMAIN, "service account name"),
        ttl_s=sec.get("ttl", int, 3600, minimum=0),
        image_pull_secrets=tuple(_names(sec, "image_pull_secrets")),
        grace_s=sec.get("grace_s", int, 30, minimum=1), source=str(sec.source.file), key_path=key_path)
    if opts.kubeconfig and not Path(opts.kubeconfig).expanduser().is_absolute():  # as known_hosts: beside the file
        opts = replace(opts, kubeconfig=str(Path(sec.source.file).parent / opts.kubeconfig))
    if opts.in_cluster and (opts.kubeconfig or opts.context):
        raise sec.fail("in_cluster", "in_cluster: true uses the pod's service account; drop kubeconfig and context")
    sec.done()
    return opts


def _names(sec: Section, key: str) -> list[str]:
    out = sec.str_list(key)
    for value in out:
        if not _DNS_SUBDOMAIN.match(value):
            raise sec.fail(key, f"{value!r} is not a valid Secret name (lower-case letters, digits, '-', '.')")
    return out


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(_LABEL_NAME.match(name)) and (not prefix or bool(_DNS_SUBDOMAIN.match(prefix)))


def _node_selector(sec: Section) -> tuple[tuple[str, str], ...]:
    raw = sec.raw("node_selector", {})
    if not isinstance(raw, dict):
        raise sec.fail("node_selector", "expected a mapping of node labels to values, e.g. "
                                        "{cloud.google.com/gke-spot: \"true\"}")
    out = []
    for key, value in raw.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not _label_key_ok(str(key)) or not _LABEL_VALUE.match(text):
            raise sec.fail("node_selector", f"{key!r}: {value!r} is not a valid node label and value")
        out.append((str(key), text))
    return tuple(out)


def _tolerations(sec: Section) -> tuple[Toleration, ...]:
    raw = sec.raw("tolerations", [])
    if not isinstance(raw, list):
        raise sec.fail("tolerations", "expected a list of tolerations (key, operator, value, effect)")
    out = []
    for i, item in enumerate(raw):
        t = Section(item, sec.source, (*sec.path, "tolerations", i))
        key = t.get("key", str, None)
        operator = t.get("operator", str, "Equal", choices=OPERATORS)
        value = t.get("value", (str, bool, int), None)
        value = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        effect = t.get("effect", str, None, choices=EFFECTS)
        if key is not None and not _label_key_ok(key):
            raise t.fail("key", f"{key!r} is not a valid taint key")
        if operator == "Exists" and value is not None:
            raise t.fail("value", "operator Exists takes no value")
        if operator == "Equal" and key is None:
            raise t.fail("key", "operator Equal needs a key (or use operator: Exists to tolerate every taint)")
        t.done()
        out.append(Toleration(key, operator, value, effect))
    return tuple(out)
