"""The generated Kubernetes objects, as data: every manifest validates with
kubernetes-validate --strict against the API schemas of Kubernetes 1.30 and 1.37 (the CLI,
as an admin would run it, and the library), names fit in 63 characters, and the registry's
kubernetes: keys are checked with one clear error each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.backends.kubejob import (
    MAX_NAME,
    RUNNERS_MOUNT,
    job_manifest,
    job_name,
    run_name,
    runners_configmap,
    spec_configmap,
)
from coordinator.backends.plan import HostLayout, build
from coordinator.config.registry import load_registry
from coordinator.errors import RegistryError
from coordinator.records import Allocation, Recipe
from tests.kube.conftest import registry_text

kv = pytest.importorskip("kubernetes_validate")
VERSIONS = ("1.30.0", "1.37.0")
SPOT = """\
      gpus: 1
      cpu_limit: "2"
      memory_limit: 4Gi
      node_selector: {cloud.google.com/gke-spot: "true"}
      tolerations:
        - {key: cloud.google.com/gke-spot, operator: Equal, value: "true", effect: NoSchedule}
        - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
      priority_class: coord-low
      service_account: coord-trials
      image_pull_secrets: [lab-registry]
      ttl: 600
"""


def manifests(tmp_path: Path, extra: str = SPOT, run_id: str = "search-2026", timeout_s: float | None = 90.5,
              host_path: bool = False) -> list[dict]:
    reg = tmp_path / "reg.yaml"
    text = registry_text(tmp_path).replace("      memory_request: 256Mi\n", "      memory_request: 256Mi\n" + extra)
    reg.write_text(text.replace("volume_claim: coord-data", "host_path: /srv/coord") if host_path else text)
    p = load_registry(reg).platforms["kube"]
    opts = p.kubernetes
    assert opts is not None
    run = run_name(run_id, str(tmp_path / "run"))
    name = job_name(run, 12, 3)
    recipe = Recipe(12, "xgb", {"max_depth": 4}, 1, "xgboost", None, {"path": "/home/me/d.csv", "sha256": "ab12"},
                    ("auc",), timeout_s=timeout_s)
    layout = HostLayout(f"{opts.mount_path}/runs/{run}", RUNNERS_MOUNT, p.python, opts.mount_path, 1)
    plan = build(recipe, 3, Allocation("kube", 0, 0, "rule"), layout, f"{opts.mount_path}/data/ab12.csv")
    return [job_manifest(plan, opts, run, name), spec_configmap(plan, run, name, opts.namespace),
            runners_configmap(run, "d1g35t", {"run_trial.py": b"print(1)\n"}, opts.namespace)]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(tmp_path: Path, version: str) -> None:
    for extra in (SPOT, ""):  # every optional key, and none
        for m in manifests(tmp_path, extra) + manifests(tmp_path, extra, timeout_s=None):
            kv.validate(m, version, strict=True)
    host = manifests(tmp_path, "", host_path=True)[0]
    assert host["spec"]["template"]["spec"]["volumes"][0]["hostPath"] == {"path": "/srv/coord", "type": "DirectoryOrCreate"}
    kv.validate(host, version, strict=True)


def test_the_cli_validates_them_for_both_versions_and_rejects_a_wrong_field(tmp_path: Path) -> None:
    paths = []
    for i, m in enumerate(manifests(tmp_path)):
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(json.dumps(m))
    cli = [sys.executable, "-m", "kubernetes_validate"]  # the kubernetes-validate command
    for version in VERSIONS:
        done = subprocess.run([*cli, "--strict", "-k", version, *map(str, paths)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    job = manifests(tmp_path)[0]
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo the API server would drop
    (tmp_path / "bad.json").write_text(json.dumps(job))
    bad = subprocess.run([*cli, "--strict", "-k", "1.30.0", str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert bad.returncode != 0 and "resource" in bad.stdout + bad.stderr


def test_the_job_is_one_attempt_coord_retries(tmp_path: Path) -> None:
    job, spec_cm, runners = manifests(tmp_path)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 91 and spec["ttlSecondsAfterFinished"] == 600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert rules[1]["onExitCodes"]["values"] == [75] and all(r["action"] == "FailJob" for r in rules)
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and pod["priorityClassName"] == "coord-low"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true"} and len(pod["tolerations"]) == 2
    env = {e["name"]: e["value"] for e in c["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in env and env["COORD_SPEC"] == "/etc/coord/attempt/spec.json"
    assert env["COORD_CHECKPOINT_DIR"].startswith("/coord/runs/")  # on the volume: a successor resumes from it
    assert "max_depth" not in json.dumps(c["command"]) + json.dumps(c["env"])  # parameters only in spec.json
    assert json.loads(spec_cm["data"]["spec.json"])["params"] == {"max_depth": 4}
    assert json.loads(spec_cm["data"]["spec.json"])["data"]["path"] == "/coord/data/ab12.csv"
    labels = {o["metadata"]["labels"]["coord.dev/run"] for o in (job, spec_cm, runners)}
    assert len(labels) == 1 and pod is not None and spec["template"]["metadata"]["labels"]["coord.dev/trial"] == "12"


def test_names_fit_63_characters_for_long_run_ids(tmp_path: Path) -> None:
    long = "My Very_Long.Search-Name " * 8
    run = run_name(long, "/runs/a")
    name = job_name(run, 123456, 12)
    assert len(name) <= MAX_NAME and name.endswith("-123456-a12") and name == name.lower()
    assert run != run_name(long, "/runs/b")  # two runs of one name never share a Job
    assert run_name("x", "/r") == run_name("x", "/r") and run_name("___", "/r").startswith("run-")
    m = manifests(tmp_path, run_id=long)[0]
    kv.validate(m, "1.37.0", strict=True)


@pytest.mark.parametrize(("extra", "message"), [
    ("      namespce: lab\n", "kubernetes.namespce: unknown key; did you mean 'namespace'?"),
    ("      gpus: -1\n", "kubernetes.gpus: must be >= 0"),
    ("      cpu_limit: 2 cores\n", "'2 cores' is not a Kubernetes quantity"),
    ("      tolerations: [{key: spot, operator: Exist}]\n", "unknown value 'Exist'"),
    ("      tolerations: [{key: spot, operator: Exists, value: x}]\n", "operator Exists takes no value"),
    ("      node_selector: {bad key!: x}\n", "is not a valid node label"),
    ("      priority_class: Low_Priority\n", "'Low_Priority' is not a valid PriorityClass name"),
    ("      host_path: /srv/coord\n", "give volume_claim or host_path, not both"),
    ("      grace_s: 0\n", "kubernetes.grace_s: must be >= 1"),
    ("      in_cluster: true\n      context: lab\n", "in_cluster: true uses the pod's service account"),
])
def test_bad_registry_keys_give_one_clear_error(tmp_path: Path, extra: str, message: str) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(registry_text(tmp_path, extra=""))
    reg.write_text(reg.read_text().replace("      memory_request: 256Mi\n", "      memory_request: 256Mi\n" + extra))
    with pytest.raises(RegistryError) as err:
        load_registry(reg)
    assert message in str(err.value) and str(reg) in str(err.value)


def test_a_kubernetes_platform_needs_its_section_and_image(tmp_path: Path) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(registry_text(tmp_path).replace("mount_path: /coord", "mount_path: relative"))
    with pytest.raises(RegistryError, match="'relative' is not an absolute directory path"):
        load_registry(reg)
    reg.write_text(registry_text(tmp_path).replace("      image: ghcr.io/lab/coord-trials:1\n", ""))
    with pytest.raises(RegistryError, match="kubernetes.image: required key is missing"):
        load_registry(reg)
    text = registry_text(tmp_path)
    reg.write_text(text[:text.index("    kubernetes:")] + "task_routing_rules:" + text.split("task_routing_rules:")[1])
    with pytest.raises(RegistryError, match="platforms.kube.kubernetes: required key is missing"):
        load_registry(reg)
