"""docs/compare.md runs as written: its job spec through the job's command, then its
write_comparison snippet on the predictions that made."""

from __future__ import annotations

import json
import os
import re
import runpy
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
