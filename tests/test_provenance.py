"""Provenance: every result says where and with what it was made; run.json says with which
coord, registry and git commit. Real searches, real git repositories."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordinator import provenance
from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions
from coordinator.store.rundir import RunStore


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dissertation's git repository, the directory coord runs in."""
    root = tmp_path / "thesis"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "analysis.py").write_text("print('v1')\n")
    _git(root, "add", "analysis.py")
    _git(root, "commit", "-q", "-m", "first")
    monkeypatch.chdir(root)
    return root


def test_every_result_and_the_run_record_their_provenance(repo: Path, small_csv: Path) -> None:
    out = run_search(SearchOptions(models=("glm",), data=str(small_csv), target="home_win", time_col="season",
                                   folds=2, trials=2, seed=11, run_dir=str(repo / "runs" / "a")))
    store = RunStore.open(Path(out["run_dir"]))
    cfg = store.config
    prov = cfg["provenance"]
    assert prov["registry_sha256"] == provenance.digest(cfg["registry"]) and len(prov["registry_sha256"]) == 64
    assert prov["git"] == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": "false"}
    assert prov["coord_version"] == provenance.coord_version()
    assert prov["coordinator"]["optuna"] == provenance.library_version("optuna")
    results = [t.result for t in store.trials()]
    assert len(results) == 2
    for r in results:
        assert r is not None and r.provenance is not None
        host = r.provenance["host"]  # the local platform's probe: this very machine
        assert host["python"] == platform.python_version() and host["cores"] == os.cpu_count()
        assert host["cpu_model"] == provenance.cpu_model() and host["hostname"] == platform.node()
        assert host["libraries"]["sklearn"] == provenance.library_version("scikit-learn")
        assert r.provenance["seeds"] == {"trial": r.seed, "sampler": 11, "split": 11}  # --seed seeds the split too
        assert "disk_free_gb" not in host and "clock_skew_s" not in host  # nothing that changes by the minute
    text = CliRunner().invoke(main, ["show", out["run_dir"], "1"]).output
    assert f"made on    {platform.node()}: {provenance.cpu_model()}, {os.cpu_count()} cores" in text
    assert f"  seeds    sampler 11, split 11, trial {results[1].seed}" in text
    assert f"  git      {prov['git']['commit'][:12]}\n" in text + "\n"

    (repo / "analysis.py").write_text("print('v2: not committed')\n")  # a dirty working tree is said so
    again = run_search(SearchOptions(models=("glm",), data=str(small_csv), target="home_win", time_col="season",
                                     folds=2, trials=1, run_dir=str(repo / "runs" / "b")))
    cfg_b = json.loads((Path(again["run_dir"]) / "run.json").read_text())
    assert cfg_b["provenance"]["git"]["dirty"] == "true"
    assert cfg_b["provenance"]["registry_sha256"] == prov["registry_sha256"]  # same registry, same hash


def test_digest_is_canonical() -> None:
    assert provenance.digest({"a": 1, "b": [1, 2]}) == provenance.digest({"b": [1, 2], "a": 1})
    assert provenance.digest({"a": 1}) != provenance.digest({"a": 2})


def test_host_facts_keep_only_what_does_not_change_by_the_minute() -> None:
    probe = {"python": "3.11.7", "cores": 4, "disk_free_gb": 10.0, "clock_skew_s": 0.1, "latency_ms": 3,
             "gpus": [{"index": 0, "model": "NVIDIA GeForce RTX 4090", "memory_gb": 24.0, "free_gb": 3.0,
                       "utilization": 97.0}]}
    facts = provenance.host_facts(probe)
    assert facts == {"python": "3.11.7", "cores": 4,
                     "gpus": [{"index": 0, "model": "NVIDIA GeForce RTX 4090", "memory_gb": 24.0}]}
    res = provenance.for_result(facts, 0, {"trial": 3})
    assert res["gpu"] == {"index": 0, "model": "NVIDIA GeForce RTX 4090"} and "gpus" not in res["host"]
    assert provenance.for_result(None, None, {"trial": 3}) == {"seeds": {"trial": 3}}
