"""`coord hosts` and `coord plan` for a Kubernetes platform, and every command
docs/kubernetes.md shows, run against the in-process fake API (tests/kubefake.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator.cli import main
from tests import kubefake
from tests.kube.conftest import registry_text
from tests.slurm.test_slurm_cli import _join_quoted

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kubernetes.md"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: lab, context: {cluster: c, user: u}}]
current-context: lab
"""


def coord(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], cwd=tmp, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_plan_shows_the_platform_its_slots_job_shape_and_why(tmp_path: Path) -> None:
    text = registry_text(tmp_path, slots=3).replace('  - model_type: "*"\n    route_to: [kube]\n',
                                                    "  - model_type: XGBoost\n    route_to: [kube]\n"
                                                    "    reason: GPU jobs on the cluster\n")
    (tmp_path / "reg.yaml").write_text(text)
    done = coord(tmp_path, "plan", "--registry", "reg.yaml", "--model", "xgboost")
    assert done.returncode == 0, done.stderr
    assert "Kubernetes (experimental: not tested against a real cluster): namespace coord-test" in done.stdout
    assert "one Job per trial (cpu 500m, memory 256Mi, nvidia.com/gpu 0)" in done.stdout
    assert "at most 3 pending or running" in done.stdout and "3 slots" in done.stdout
    assert re.search(r"preferred +kube +kubernetes 3 slots +-- GPU jobs on the cluster", done.stdout), done.stdout


def test_hosts_says_experimental_and_why_an_unreachable_cluster_fails(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig.yaml").write_text(KUBECONFIG)  # nothing listens on port 9
    text = registry_text(tmp_path).replace("      mount_path: /coord\n", "      mount_path: /coord\n      kubeconfig: kubeconfig.yaml\n")
    (tmp_path / "reg.yaml").write_text(text)
    done = coord(tmp_path, "hosts", "--registry", "reg.yaml")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("kube "))
    assert done.returncode == 4 and "FAIL" in line and "namespace 'coord-test': cannot list jobs" in line, done.stdout
    assert "(experimental: not tested against a real cluster)" in line
    (tmp_path / "reg.yaml").write_text(text.replace("kubeconfig.yaml", "missing.yaml"))
    done = coord(tmp_path, "hosts", "--registry", "reg.yaml")
    assert done.returncode == 4 and "cannot load the Kubernetes configuration from" in done.stdout, done.stdout


def test_hosts_ok_against_the_fake_and_an_rbac_refusal_is_named(
        tmp_path: Path, cluster: kubefake.Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reg.yaml").write_text(registry_text(tmp_path))
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(main, ["hosts", "--registry", "reg.yaml", "--json"], catch_exceptions=False)
    (row,) = json.loads(done.output)
    assert done.exit_code == 0 and row["ok"] and row["experimental"] and "namespace coord-test reachable" in row["note"]
    cluster.fail("list_namespaced_job", 403)
    done = CliRunner().invoke(main, ["hosts", "--registry", "reg.yaml"], catch_exceptions=False)
    assert done.exit_code == 4 and "not allowed to list jobs (HTTP 403)" in done.output
    assert "jobs, pods, pods/log and configmaps" in done.output


def test_every_command_in_docs_kubernetes_md_runs(tmp_path: Path, cluster: kubefake.Cluster,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example: its registry (the image's Python made this one) and its commands,
    in-process so that they reach the fake API."""
    text = DOC.read_text()
    reg = re.search(r"`cluster.yaml`:\n\n```yaml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    reg = reg.replace("python: python3", f"python: {sys.executable}")
    (tmp_path / "cluster.yaml").write_text(reg)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 6}\n")
    (tmp_path / "train.py").write_text("import json, os\nx = json.load(open(os.environ['COORD_SPEC']))['params']['x']\n"
                                       "print('loss=%s' % ((x - 3) ** 2))\n")
    cluster.claims["coord-data"] = tmp_path / "volume"
    monkeypatch.chdir(tmp_path)
    commands = re.findall(r"^\$ coord (.*)$", text, re.M)
    assert len(commands) == 4, "docs/kubernetes.md's commands changed: update this test"
    for cmd in commands:
        args = cmd.replace("python train.py", f"{sys.executable} {tmp_path / 'train.py'}").split()
        args = [a.strip("'") for a in _join_quoted(args)]
        done = CliRunner().invoke(main, args, catch_exceptions=False)
        assert done.exit_code == 0, (cmd, done.output[-2000:])
        if args[0] == "hosts":
            assert "experimental" in done.output
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "run").glob("trials/*/result.json"))]
    assert len(results) == 3 and all(r["platform"] == "gke" and r["status"] == "COMPLETE" for r in results)
    job = json.loads((tmp_path / "run/trials/0/attempt-1/job.json").read_text())
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true"} and pod["priorityClassName"] == "coord-low"


def test_plan_shows_slurm_and_kubernetes_platforms_side_by_side(tmp_path: Path) -> None:
    text = registry_text(tmp_path, slots=4).replace("platforms:\n", """platforms:
  hpc:
    connection: slurm
    work_dir: /shared/coord
    specs: {cpu_cores: 8, memory_gb: 32}
    max_concurrent_jobs: 6
    slurm: {partition: gpu, gpus: 1, mem: 16G, cpus_per_task: 8}
""").replace('  - model_type: "*"\n    route_to: [kube]\n', """  - model_type: NeuralNetwork
    route_to: [hpc, kube]
    reason: GPUs on the HPC cluster
  - model_type: "*"
    route_to: [kube]
    reason: spot CPUs
""")
    (tmp_path / "reg.yaml").write_text(text)
    done = coord(tmp_path, "plan", "--registry", "reg.yaml", "--model", "mlp", "--model", "glm")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "SLURM: partition gpu, one job per trial" in out and "at most 6 queued or running" in out
    assert "Kubernetes (experimental" in out and "at most 4 pending or running" in out
    mlp = out[out.index("mlp (model type NeuralNetwork"):out.index("glm (model type")]
    assert re.search(r"preferred +hpc +slurm +6 slots \(6 with GPU\) +-- GPUs on the HPC cluster", mlp), mlp
    assert re.search(r"kube +kubernetes 4 slots +-- fallback", mlp), mlp
    assert re.search(r"preferred +kube +kubernetes 4 slots +-- spot CPUs", out[out.index("glm (model type"):]), out
