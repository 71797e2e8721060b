"""Usage and cost accounting (store/usage.py): every attempt counts, each slot carries its
share of a machine's price, GPU-hours are priced apart, electricity is watts x tariff, a
running attempt counts up to now; and the registry keys that price a platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config.registry import load_registry
from coordinator.errors import RegistryError
from coordinator.store.usage import Rates, account

CLOUD = {"max_concurrent_jobs": 4, "cost_per_hour": 2.0, "gpu_cost_per_hour": 1.5}
OWNED = {"max_concurrent_jobs": 2, "watts": 500.0, "tariff_per_kwh": 0.30}
FREE = {"max_concurrent_jobs": 2}


def _launch(n: int, a: int, platform: str, gpu: int | None = None, t: float = 100.0) -> dict:
    return {"event": "launched", "number": n, "attempt": a, "platform": platform, "gpu": gpu, "t": t}


def _end(n: int, a: int, seconds: float) -> dict:
    return {"event": "ended", "number": n, "attempt": a, "duration_s": seconds}


def test_a_slot_carries_its_share_of_the_machine_and_gpu_hours_are_priced_apart() -> None:
    events = [_launch(0, 1, "cloud", gpu=0), _end(0, 1, 3600.0),  # one GPU-hour on a 4-slot machine
              _launch(1, 1, "owned"), _end(1, 1, 1800.0),  # a failed attempt: it still costs
              _launch(1, 2, "owned"), _end(1, 2, 1800.0),
              _launch(2, 1, "free"), _end(2, 1, 7200.0)]
    use = account(events, {"cloud": CLOUD, "owned": OWNED, "free": FREE}, {0: "xgboost", 1: "glm", 2: "glm"}, "EUR")
    assert use.by_trial[0].cost == pytest.approx(2.0 / 4 + 1.5)  # a quarter of the machine, plus the GPU
    assert use.by_trial[0].gpu_hours == pytest.approx(1.0)
    assert use.by_trial[1].attempts == 2 and use.by_trial[1].machine_hours == pytest.approx(1.0)
    assert use.by_trial[1].cost == pytest.approx(0.5 * 0.30 / 2)  # 0.5 kW x 1 h x 0.30, over 2 slots
    assert use.by_trial[2].cost is None and use.by_trial[2].machine_hours == pytest.approx(2.0)
    assert use.by_study["glm"].attempts == 3 and use.by_study["glm"].cost == pytest.approx(0.075)
    assert use.total.machine_hours == pytest.approx(4.0) and use.total.cost == pytest.approx(2.075)
    assert use.by_platform["free"].cost is None and use.money(use.total.cost) == "2.08 EUR"


def test_a_running_attempt_counts_up_to_now_and_nothing_priced_is_no_cost() -> None:
    events = [_launch(0, 1, "free", t=1000.0), _launch(0, 1, "free", t=1500.0) | {"event": "reattached"}]
    assert account(events, {"free": FREE}, {0: "glm"}).total.attempts == 0  # a dead run: not counted
    live = account(events, {"free": FREE}, {0: "glm"}, now=1060.0)
    assert live.running == 1 and live.total.machine_s == pytest.approx(60.0)  # from the first launch
    assert not live.priced and live.money(live.total.cost) == "-"


def test_a_slurm_job_counts_the_gpus_it_asked_for() -> None:
    rates = Rates.of({"max_concurrent_jobs": 8, "gpu_cost_per_hour": 1.0, "slurm": {"gpus": 2}})
    use = account([_launch(0, 1, "hpc", gpu=0), _end(0, 1, 1800.0)],
                  {"hpc": {"max_concurrent_jobs": 8, "gpu_cost_per_hour": 1.0, "slurm": {"gpus": 2}}}, {0: "mlp"})
    assert rates.gpus_per_gpu_attempt == 2 and use.total.gpu_hours == pytest.approx(1.0)
    assert use.total.cost == pytest.approx(1.0)


def _registry(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "reg.yaml"
    path.write_text(text, encoding="utf-8")
    return load_registry(str(path))


BASE = "platforms:\n  box:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 4}\n"


def test_the_registry_prices_a_platform_and_refuses_half_an_electricity_price(tmp_path: Path) -> None:
    reg = _registry("currency: EUR\n" + BASE + "    watts: 450\n    tariff_per_kwh: 0.3\n    gpu_cost_per_hour: 0\n", tmp_path)
    box = reg.platforms["box"]
    assert (box.watts, box.tariff_per_kwh, box.gpu_cost_per_hour, reg.currency) == (450.0, 0.3, 0.0, "EUR")
    assert reg.to_json()["currency"] == "EUR" and reg.to_json()["platforms"]["box"]["watts"] == 450.0
    with pytest.raises(RegistryError, match=r"platforms\.box\.watts.*only with tariff_per_kwh"):
        _registry(BASE + "    watts: 450\n", tmp_path)
    with pytest.raises(RegistryError, match="currency"):
        _registry("currency: 'EUR; rm -rf'\n" + BASE, tmp_path)


def test_a_priced_search_reports_its_cost_everywhere(tmp_path: Path, script, space_file) -> None:
    """A real search on a registry that prices the machine (3.60 EUR an hour, 2 slots: 0.0005
    EUR per slot-second) and electricity: the summary, coord status, usage.csv and usage.tex
    agree with the attempts' own durations, a failed attempt counts, and the table compiles."""
    import csv
    import json

    from click.testing import CliRunner

    from coordinator.cli import main
    from coordinator.store.rundir import RunStore
    from tests.test_report_latex import _pdflatex

    reg = tmp_path / "reg.yaml"
    reg.write_text("currency: EUR\nplatforms:\n  box:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 2}\n"
                   "    max_concurrent_jobs: 2\n    cost_per_hour: 3.0\n    watts: 2000\n    tariff_per_kwh: 0.3\n")
    cmd = script("import time\ntime.sleep(0.3)\nif p['x'] > 0.8 and os.environ['COORD_ATTEMPT'] == '1':\n"
                 "    sys.exit(3)\nprint(f\"loss={p['x']}\")\n")
    space = space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    res = CliRunner().invoke(main, ["search", "--command", cmd, "--space", space, "--metric", "loss", "--trials", "6",
                                    "--parallel", "2", "--registry", str(reg), "--run-dir", str(tmp_path / "run"),
                                    "--json", "--seed", "4"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output.strip().splitlines()[-1])
    run = tmp_path / "run"
    durations = [a.duration_s for rec in RunStore.open(run).trials() if rec.result for a in rec.result.attempts]
    rate = (3.0 + 2.0 * 0.3) / 2 / 3600  # EUR per slot-second
    assert result["usage"]["attempts"] == len(durations) >= 6
    assert result["usage"]["cost"] == pytest.approx(sum(durations) * rate, rel=1e-3)
    assert result["usage"]["currency"] == "EUR" and result["usage"]["gpu_hours"] == 0
    status = json.loads(CliRunner().invoke(main, ["status", str(run), "--json"]).output)
    assert status["cost"] == pytest.approx(result["usage"]["cost"]) and status["currency"] == "EUR"
    shown = CliRunner().invoke(main, ["status", str(run)]).output
    assert "used         0.00 machine-hours, 0.00" in shown and "EUR" in shown, shown
    rows = list(csv.DictReader((run / "report" / "usage.csv").open()))
    assert sum(float(r["cost"]) for r in rows) == pytest.approx(sum(durations) * rate, rel=1e-2)
    assert sum(int(r["attempts"]) for r in rows) == len(durations)
    table = (run / "report" / "tables" / "usage.tex").read_text()
    assert "Cost (EUR)" in table and "custom" in table
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}"
                                      "\\begin{document}\\input{" + str(run / "report/tables/usage.tex") +
                                      "}\\end{document}\n")
    _pdflatex(tmp_path, "doc.tex")


def test_the_live_display_shows_what_the_search_has_used(tmp_path: Path, script, space_file,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from coordinator.app import run_search
    from coordinator.config.experiment import SearchOptions

    reg = tmp_path / "reg.yaml"
    reg.write_text("currency: EUR\nplatforms:\n  box:\n    connection: local\n    specs: {cpu_cores: 2, memory_gb: 2}\n"
                   "    max_concurrent_jobs: 2\n    cost_per_hour: 36000\n")  # 5 EUR per slot-second: visible at once
    run_search(SearchOptions(command=script("import time\ntime.sleep(0.5)\nprint('loss=1')\n"),
                             space=space_file("params:\n  x: {type: float, low: 0.0, high: 1.0}\n"), metrics=("loss",),
                             trials=2, parallel=2, registry=str(reg), run_dir=str(tmp_path / "run")), mode="live")
    out = capsys.readouterr().out
    line = next((ln for ln in out.splitlines() if ln.strip().startswith("used")), "")
    assert "machine-hours" in line and "EUR" in line, out
    assert float(line.split(",")[-1].split()[0]) >= 2 * 0.5 * 5, line  # two attempts of at least 0.5 s each
