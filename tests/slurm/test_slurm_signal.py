"""SLURM's ``--signal`` before the time limit, on the real cluster: a job (or a pilot job)
with a one-minute limit and ``signal_s: 45`` gets SIGTERM a few seconds in (slurmctld
sends it at its next time-limit check, up to about 30 s later); the built-in runner
checkpoints and exits 75; the attempt ends *preempted* and the trial goes on at once in a
new job from its checkpoint, without spending a retry, until it finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import slurmcluster
from tests.slurm.test_slurm_search import coord, registry, results


@pytest.mark.slow
@pytest.mark.timeout(660)
# Each mode waits on slurmctld's time-limit check (every 30 s, not configurable) and trains
# for most of a minute: about 2 minutes each. The pilot mode runs by default (the longer path:
# the pilot's own runner gets the signal, found a real bug in a pilot's first seconds); the
# job-per-attempt mode is opt-in (COORD_TEST_ALL=1), its requeue-from-checkpoint path also
# run by tests/slurm/test_slurm_search.py's scontrol requeue test.
@pytest.mark.parametrize("pilot", [pytest.param(False, id="job-per-attempt", marks=pytest.mark.optin),
                                   pytest.param(True, id="pilot")])
def test_the_signal_before_the_time_limit_checkpoints_and_requeues(slurm: slurmcluster.Cluster, small_csv: Path,
                                                                  tmp_path: Path, pilot: bool) -> None:
    reg = registry(tmp_path, slots=1)
    extra = "      signal_s: 45\n" + ("      pilot: true\n" if pilot else "")
    reg.write_text(reg.read_text().replace("model_type: custom", 'model_type: "*"').replace(
        'time_limit: "00:10:00"', 'time_limit: "1"').replace("      mem: 100M\n", "      mem: 100M\n" + extra))
    # 4000 trees: about 40 s of training on an idle core (so the signal comes first), minutes under load
    (tmp_path / "space.yaml").write_text("params:\n  max_depth: {type: int, low: 4, high: 5}\n"
                                         "fixed: {n_estimators: 4000}\n")
    done = coord(tmp_path, "search", "--model", "random_forest", "--data", str(small_csv), "--target", "home_win",
                 "--space", "space.yaml", "--trials", "1", "--parallel", "1", "--checkpoint-every", "0",
                 "--max-retries", "0", "--registry", "reg.yaml", "--run-dir", "run", "--quiet", timeout=600)
    attempts = [json.loads(p.read_text()) for p in sorted((tmp_path / "shared" / "runs").glob("run/trials/0/*/exit.json"))]
    assert done.returncode == 0, (done.stderr[-3000:], attempts)
    (res,) = results(tmp_path / "run")
    kinds = [a["kind"] for a in res["attempts"]]
    assert res["status"] == "COMPLETE" and len(kinds) >= 2, res
    assert set(kinds[:-1]) == {"preempted"}, kinds  # every signalled attempt requeued, none a failure
    first = tmp_path / "shared" / "runs" / "run" / "trials" / "0" / "attempt-1"
    rec = json.loads((first / "exit.json").read_text())
    assert rec["exit"] == 75 and rec["signalled"] == 1, rec
    last = tmp_path / "run" / "trials" / "0" / f"attempt-{len(kinds)}" / "stderr"
    assert "resuming from the checkpoint at step" in last.read_text()
