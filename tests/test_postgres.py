"""One study from several coordinators: two coord processes started at once on the same
--storage postgresql:// study (as on two machines) share it through Optuna's RDB storage
on a real PostgreSQL server: every trial once in the study, each coordinator's own trials
in its own run directory, the sampler seeing both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.store.rundir import RunStore
from tests import pgserver

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("postgres")


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pgserver.PgServer]:
    why = pgserver.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL test: {why}")
        pytest.skip(why)
    server = pgserver.PgServer(Path("/tmp") / f"coord-pg-{os.getpid()}").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_two_coordinators_share_one_study(pg: pgserver.PgServer, tmp_path: Path, script, space_file) -> None:
    import optuna

    url = pg.database("hpo_shared")
    cmd = script("time.sleep(0.3)\nprint(f\"loss={(p['x'] - 0.3) ** 2}\")\n")
    space = space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "coordinator", "search", "--command", cmd, "--space", space,
                                 "--metric", "loss", "--trials", "4", "--parallel", "2", "--storage", url,
                                 "--seed", "1" if name == "a" else "2", "--run-dir", str(tmp_path / name),
                                 "--quiet", "--no-mlflow"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = {name: start(name) for name in ("a", "b")}  # at once: both create the schema and the study
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, out + err)
    storage = optuna.storages.RDBStorage(url)
    (study,) = storage.get_all_studies()
    trials = storage.get_all_trials(study._study_id)
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_number = {t.number: t for t in trials}
    seen = set()
    for name in ("a", "b"):
        results = [r.result for r in RunStore.open(tmp_path / name).trials() if r.result]
        assert len(results) == 4, name
        for r in results:  # each run's trial is the study's trial of the same parameters and value
            t = by_number[r.optuna_number]
            assert t.params == r.params and t.values == r.values
            seen.add(r.optuna_number)
    assert seen == set(range(8))  # no trial recorded by both, none by neither
