"""docs/compare.md runs as written: its coord commands (a comparison, a search and the
comparison of its best configurations, the rebuild; the resume is run by
tests/test_compare_resume.py), its job spec through the job's command, then its
write_comparison snippet on the predictions that made."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator import resources
from tests.compare_data import odds_csv

DOC = Path(__file__).resolve().parents[1] / "docs" / "compare.md"


def _block(lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)
    assert len(found) == 1, f"one {lang} block expected in {DOC}"
    return str(found[0])


def test_the_documented_job_and_snippet_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = json.loads(_block("json"))
    odds_csv(tmp_path / spec["data"]["path"])
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    command = "COORD_SPEC=spec.json python runners/compare_job.py"
    assert command in DOC.read_text()
    proc = subprocess.run([sys.executable, str(resources.folder("runners") / "compare_job.py")], cwd=tmp_path,
                          env={**os.environ, "COORD_SPEC": "spec.json"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / spec["checkpoint_dir"] / "predictions.json").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "snippet.py").write_text(_block("python"))
    runpy.run_path(str(tmp_path / "snippet.py"))
    assert (tmp_path / "compare" / "report.html").is_file()
    assert (tmp_path / "compare" / "tables" / "significance.tex").is_file()
    assert (tmp_path / "compare" / "figures" / "roc_platt.pdf").is_file()


# every coord command the page shows, and the test that runs it
COMPARE = ("coord compare --model glm --model random_forest --calibration none --calibration platt --seeds 2 "
           "--data games.csv --target home_win --time-col season --odds-col odds_home")  # below
SEARCH = "coord search --model xgboost --trials 4 --data games.csv --target home_win --time-col season"  # below
FROM = ("coord compare --from runs/xgboost-* --model xgboost --model glm --top 2 --seeds 3 --data games.csv "
        "--target home_win --time-col season --odds-col odds_home")  # below
REPORT = "coord report runs/compare-*"  # below
RESUME = "coord resume runs/compare-*"  # tests/test_compare_resume.py
ALL = (COMPARE, SEARCH, FROM, REPORT, RESUME)


def shown_commands() -> list[str]:
    return [line.strip() for line in DOC.read_text().splitlines() if line.startswith("    coord ")]


def shell_env(tmp: Path) -> dict[str, str]:
    """PATH with a ``coord`` that is this checkout's, run by this Python."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "coord").write_text(f"#!/bin/sh\nexec {sys.executable} -m coordinator \"$@\"\n")
    (bin_dir / "coord").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(DOC.parents[1])}


def run_shown(line: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """One command of the page, in bash (its globs expand as for a reader)."""
    assert line in shown_commands(), f"not on docs/compare.md: {line}"
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=shell_env(cwd), capture_output=True, text=True,
                          timeout=timeout)


def test_every_command_the_page_shows_is_run_by_a_test() -> None:
    assert sorted(shown_commands()) == sorted(ALL)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_documented_commands_run(tmp_path: Path) -> None:
    """The page's commands in order, in one folder: a comparison of defaults, a search and
    the comparison of its best two configurations, then a rebuild of the latter's outputs."""
    odds_csv(tmp_path / "games.csv")
    first = run_shown(COMPARE, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "random_forest  platt" in first.stdout and "roi %" in first.stdout
    (run,) = (tmp_path / "runs").glob("compare-*")
    assert (run / "compare" / "report.html").is_file()
    shutil.rmtree(run)  # the page's later globs name one compare run
    searched = run_shown(SEARCH, tmp_path)
    assert searched.returncode == 0, searched.stderr[-3000:]
    second = run_shown(FROM, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("compare-*")
    table = (run / "compare" / "comparison.csv").read_text()
    assert {line.split(",")[0] for line in table.splitlines()[1:]} == {"xgboost", "xgboost-top2", "glm"}
    assert "note: glm: no completed trial in the --from runs" in second.stdout
    html = (run / "compare" / "report.html").read_bytes()
    (run / "compare" / "report.html").unlink()
    rebuilt = run_shown(REPORT, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (run / "compare" / "report.html").read_bytes() == html
