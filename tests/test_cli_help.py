"""What a person reads: complete command summaries, help on every option, `search --help`
in sections with examples, every command the README shows parses, status --json gives
numbers, one value format everywhere, and a summary that names the best configuration
and, after Ctrl-C, the exact resume command."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from coordinator.cli import SEARCH_EXAMPLES, main
from coordinator.reporting.fmt import fmt

ROOT = Path(__file__).resolve().parents[1]


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_command_summaries_are_not_cut_off() -> None:
    for args in ([], ["hosts"]):
        out = CliRunner().invoke(main, [*args, "--help"]).output
        listed = out.split("Commands:\n", 1)[1].splitlines()
        assert listed, out
        for line in listed:
            assert line.rstrip().endswith(".") and not line.rstrip().endswith("..."), line


def test_every_option_has_help() -> None:
    missing = [f"coord {' '.join(path)} {opt.opts[0]}" for path, cmd in [((), main), *_commands(main)]
               for opt in cmd.params if isinstance(opt, click.Option) and not (opt.help or "").strip()]
    assert missing == []


def test_search_help_is_in_sections_and_ends_with_three_examples() -> None:
    out = CliRunner().invoke(main, ["search", "--help"], terminal_width=100).output
    titles = re.findall(r"^(\S[^\n]*):$", out, flags=re.M)
    assert titles == ["What to tune", "Data", "Budget", "Where it runs", "Early stopping and PBT", "Reliability",
                      "Output", "Tracking (MLflow)", "Other options", "Examples"]
    other = out.split("Other options:\n", 1)[1].split("\n\n", 1)[0]
    assert other.split() == ["-h,", "--help", "Show", "this", "message", "and", "exit."]  # nothing else unplaced
    assert out.split("Reliability:\n", 1)[1].split("\n\n")[0].count("--") == 3
    examples = out.split("Examples:\n", 1)[1].strip().splitlines()
    assert [e.strip() for e in examples] == SEARCH_EXAMPLES and len(examples) == 3


def _parse(line: str) -> None:
    """Resolve a shown `coord ...` line down to its command and parse its options and
    arguments exactly as click would, without running anything."""
    args = [a for a in shlex.split(line, comments=True)[1:] if a != "..."]  # "..." = "and more options"
    cmd: click.Command = main
    ctx = cmd.make_context("coord", args)
    while isinstance(cmd, click.Group):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args  # click < 8.2
        rest = [*protected, *ctx.args]
        if not rest:
            return
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None, line
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)


def _shown_commands() -> list[object]:
    cases: list[object] = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "usage.md"):
        for number, text in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if text.startswith("    ") and text.strip().startswith("coord "):
                cases.append(pytest.param(text.strip(), id=f"{doc.name}:{number}"))
    return cases


@pytest.mark.parametrize("line", _shown_commands())
def test_every_command_the_docs_show_parses(line: str) -> None:
    _parse(line)


@pytest.mark.parametrize("line", SEARCH_EXAMPLES)
def test_every_search_help_example_parses(line: str) -> None:
    _parse(line)


def test_the_parse_check_catches_an_unknown_option() -> None:
    with pytest.raises(click.NoSuchOption):
        _parse("coord search --model xgboost --trails 3")
    with pytest.raises(click.UsageError):
        _parse("coord serch --model xgboost")


VALUE = 0.123456789  # shown as 0.1235 everywhere: fmt's 4 significant digits


@pytest.fixture
def finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script, space_file) -> tuple[str, Path]:
    monkeypatch.chdir(tmp_path)
    cmd = script(f"print('val_loss={VALUE!r}')\n")
    space = space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n  depth: {type: int, low: 2, high: 4}\n")
    res = CliRunner().invoke(main, ["search", "--command", cmd, "--space", space, "--metric", "val_loss",
                                    "--trials", "2", "--parallel", "1", "--run-dir", "run"])
    assert res.exit_code == 0, res.output
    return res.output, tmp_path / "run"


def test_status_json_gives_numbers(finished_run: tuple[str, Path]) -> None:
    _, run = finished_run
    res = CliRunner().invoke(main, ["status", "--json", str(run)])
    info = json.loads(res.output)
    assert info["best_value"] == VALUE and info["best_trial"] == 0 and "best" not in info
    assert info["complete"] == 2 and info["state"] == "finished"


def test_one_value_format_in_progress_summary_and_status(finished_run: tuple[str, Path]) -> None:
    output, run = finished_run
    assert "trial 0 COMPLETE 0.1235 on local" in output  # the plain progress line
    assert "best val_loss: 0.1235 (trial 0" in output  # the summary
    status = CliRunner().invoke(main, ["status", str(run)]).output
    assert re.search(r"^best +0\.1235 \(trial 0\)$", status, flags=re.M), status


def test_summary_names_the_best_model_and_parameters(finished_run: tuple[str, Path]) -> None:
    output, run = finished_run
    params = json.loads((run / "trials" / "0" / "trial.json").read_text())["params"]
    line = next(ln for ln in output.splitlines() if ln.startswith("best val_loss:"))
    assert line.startswith("best val_loss: 0.1235 (trial 0, custom: ")
    assert f"depth={params['depth']}" in line and f"x={fmt(params['x'])}" in line, line


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_ctrl_c_says_interrupted_and_prints_the_exact_resume_command(tmp_path: Path, script, space_file,
                                                                    with_plots: None) -> None:
    go = tmp_path / "go"  # the trial waits until this exists: Ctrl-C lands while it runs
    cmd = script(f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\nprint('val_loss=0.5')\n")
    space = space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    coord = [sys.executable, "-m", "coordinator"]
    proc = subprocess.Popen([*coord, "search", "--command", cmd, "--space", space, "--metric", "val_loss",
                             "--trials", "1", "--quiet", "--runs", "runs"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(p.name == "stdout" for p in tmp_path.glob("runs/*/trials/0/attempt-1/*")))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    run = next((tmp_path / "runs").iterdir())
    line, figures = out.strip().splitlines()[-2:]
    assert line == f"interrupted: unfinished trials are kept; continue with: coord resume runs/{run.name}", out
    # Ctrl-C means now: the figures (seconds of drawing) are left to coord report
    assert figures == f"figures left out to stop at once; draw them with: coord report runs/{run.name}", out
    assert not list(run.glob("report/figures/*.pdf")) and (run / "report" / "trials.csv").exists()
    drawn = subprocess.run([*coord, *shlex.split(figures.split(": ")[-1])[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0 and (run / "report" / "figures" / "timeline.pdf").exists(), drawn.stderr
    go.touch()
    again = subprocess.run([*coord, *shlex.split(line.split(": ")[-1])[1:], "--quiet"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "trials: 1 complete" in again.stdout, again.stdout + again.stderr
