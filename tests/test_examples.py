"""The README's lines that name the shipped examples (docs/examples/) run as shown, from
the repository root, with the trial count cut down: the files exist, the script speaks the
trial protocol (a metric line per epoch, so ASHA prunes it), and the data loads."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_line(start: str) -> list[str]:
    for text in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if text.strip().startswith(start):
            return shlex.split(text.split("#")[0])
    raise AssertionError(f"the README has no line starting {start!r}")


def _run(argv: list[str], tmp_path: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    assert argv[0] == "coord"
    res = subprocess.run([sys.executable, "-m", "coordinator", *argv[1:], *extra, "--runs", str(tmp_path / "runs"),
                          "--json", "--no-mlflow"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_example_script_line_runs_and_prunes(tmp_path: Path) -> None:
    line = _readme_line('coord search --command "python docs/examples/train.py"')
    result = _run(line, tmp_path, "--trials", "4", "--parallel", "2", "--pruner", "asha", "--min-resource", "2")
    assert result["complete"] + result["pruned"] == 4 and result["failed"] == 0, result
    assert result["best_value"] < 1.0, result  # a fitted linear model: far below the target's variance (~20)
    run = Path(result["run_dir"])
    steps = [json.loads(ln.split("] ", 1)[1])["step"] for ln in (run / "trials/0/attempt-1/stdout").read_text()
             .splitlines() if ln.startswith("[coord-metric]")]
    assert steps[:2] == [1, 2], steps


def test_the_example_script_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A SIGTERM mid-run: it checkpoints and exits 75; run again, it goes on from there."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"params": {"alpha": 0.001, "eta0": 0.001, "epochs": 100000}, "seed": 3}))
    env = {**os.environ, "COORD_SPEC": str(spec), "COORD_CHECKPOINT_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "docs/examples/train.py")], env=env, text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    first = [proc.stdout.readline() for _ in range(3)]
    proc.terminate()
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 75, rest
    last = json.loads((first + rest.splitlines())[-1].split("] ", 1)[1])["step"]
    spec.write_text(json.dumps({"params": {"alpha": 0.001, "eta0": 0.001, "epochs": last + 2}, "seed": 3}))
    again = subprocess.run([sys.executable, str(ROOT / "docs/examples/train.py")], env=env, text=True,
                           capture_output=True, timeout=60)
    steps = [json.loads(ln.split("] ", 1)[1])["step"] for ln in again.stdout.splitlines()]
    assert again.returncode == 0 and steps == [last + 1, last + 2], again.stdout + again.stderr


def test_the_data_line_runs_on_the_shipped_table(tmp_path: Path) -> None:
    line = _readme_line("coord search --data docs/examples/features.csv")
    result = _run(line, tmp_path, "--model", "glm", "--trials", "2")  # GLM: the fastest model to train
    assert result["complete"] == 2 and 0.5 < result["best_value"] <= 1.0, result
