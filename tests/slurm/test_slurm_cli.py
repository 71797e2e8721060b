"""`coord hosts` and `coord plan` for a SLURM platform, and the commands docs/slurm.md shows."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests import slurmcluster
from tests.slurm.test_slurm_search import coord, registry, results

DOC = Path(__file__).resolve().parents[2] / "docs" / "slurm.md"


def test_hosts_checks_sinfo_the_partition_and_python(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    registry(tmp_path)
    done = coord(tmp_path, "hosts", "--registry", "reg.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("cluster"))
    assert " ok " in f" {line} " and "FAIL" not in line, done.stdout
    registry(tmp_path, partition="nope")
    bad = coord(tmp_path, "hosts", "--registry", "reg.yaml")
    line = next(ln for ln in bad.stdout.splitlines() if ln.startswith("cluster"))
    assert "FAIL" in line and "slurm.partition 'nope' does not exist" in line and "debug" in line, bad.stdout


def test_plan_shows_the_slurm_platform(tmp_path: Path) -> None:
    registry(tmp_path)
    done = coord(tmp_path, "plan", "--registry", "reg.yaml")
    assert done.returncode == 0, done.stderr
    assert "SLURM: partition debug, one job per trial" in done.stdout and "at most 2 queued or running" in done.stdout


def test_every_command_in_docs_slurm_md_runs(slurm: slurmcluster.Cluster, tmp_path: Path) -> None:
    """The login-node example: its registry (work_dir and python made local) and its commands."""
    text = section("## A worked example: coord on the login node")
    reg = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    reg = reg.replace("/shared/scratch/alice/coord", str(tmp_path / "shared")).replace(
        "/shared/envs/coord/bin/python", sys.executable).replace("partition: short", "partition: debug")
    # the test cluster has no accounts, QOS or A100s, and fake GPUs only
    reg = re.sub(r"\n *(account|qos|extra): .*", "", reg).replace("gpus: 1", "gpus: 0")
    (tmp_path / "cluster.yaml").write_text(reg)
    (tmp_path / "space.yaml").write_text("params:\n  x: {type: int, low: 0, high: 6}\n")
    (tmp_path / "train.py").write_text("import json, os\nx = json.load(open(os.environ['COORD_SPEC']))['params']['x']\n"
                                       "print('loss=%s' % ((x - 3) ** 2))\n")
    for args in commands(text, tmp_path):
        args = [a.replace("python train.py", f"{sys.executable} {tmp_path / 'train.py'}") for a in args]
        done = coord(tmp_path, *args)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    assert all(r["platform"] == "cluster" and r["status"] == "COMPLETE" for r in results(tmp_path / "run"))


def section(heading: str) -> str:
    """One section of docs/slurm.md, to the next heading of its level."""
    text = DOC.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else None]


def commands(text: str, tmp: Path) -> list[list[str]]:
    """The section's `$ coord ...` lines as argv lists."""
    found = re.findall(r"^\$ coord (.*)$", text, re.M)
    assert found, "the section shows no coord command"
    return [[a.strip("'") for a in _join_quoted(cmd.split())] for cmd in found]


def _join_quoted(words: list[str]) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    for w in words:
        if buf:
            buf.append(w)
            if w.endswith("'"):
                out.append(" ".join(buf))
                buf = []
        elif w.startswith("'") and not (w.endswith("'") and len(w) > 1):
            buf = [w]
        else:
            out.append(w)
    return out
