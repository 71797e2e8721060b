"""`coord hosts` (the doctor) and `coord hosts trust` against real sshd servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from click.testing import CliRunner

from coordinator.cli import main
from tests.ssh.conftest import Cluster


def test_doctor_reports_every_platform(cluster: Cluster) -> None:
    reg = cluster.registry()
    res = CliRunner().invoke(main, ["hosts", "--registry", str(reg), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["platform"]: r for r in json.loads(res.output)}
    assert set(rows) == {"local", "alpha", "beta"}
    for r in rows.values():
        assert r["ok"] and r["cores"] >= 1 and r["memory_gb"] > 0 and r["disk_free_gb"] > 0
        assert r["libraries"]["xgboost"] and r["libraries"]["sklearn"] and abs(r["clock_skew_s"]) < 5
    table = CliRunner().invoke(main, ["hosts", "--registry", str(reg)])
    assert "alpha" in table.output and "ok" in table.output


def test_doctor_names_an_unreachable_host_and_fails(cluster: Cluster) -> None:
    cluster.hosts["beta"].stop()
    res = CliRunner().invoke(main, ["hosts", "--registry", str(cluster.registry())])
    assert res.exit_code == 4
    assert "beta" in res.output and "FAIL" in res.output and "cannot connect" in res.output


def test_trust_shows_the_fingerprint_and_records_only_on_yes(cluster: Cluster) -> None:
    cluster.known_hosts.write_text("")
    reg = str(cluster.registry())
    refused = CliRunner().invoke(main, ["hosts", "--registry", reg, "trust", "alpha"], input="n\n")
    assert refused.exit_code == 1 and "fingerprint: SHA256:" in refused.output
    assert cluster.known_hosts.read_text() == ""
    ok = CliRunner().invoke(main, ["hosts", "--registry", reg, "trust", "alpha"], input="y\n")
    assert ok.exit_code == 0, ok.output
    assert cluster.known_hosts.read_text().strip() == cluster.hosts["alpha"].known_hosts_line()
    doctor = CliRunner().invoke(main, ["hosts", "--registry", reg, "--json"])
    rows = {r["platform"]: r for r in json.loads(doctor.output)}
    assert rows["alpha"]["ok"] and not rows["beta"]["ok"] and "unknown host key" in rows["beta"]["error"]
    # the key matches what ssh-keygen reports for the host's key file
    fp = subprocess.run(["ssh-keygen", "-lf", str(cluster.hosts["alpha"].root / "host_key.pub")],
                        capture_output=True, text=True).stdout.split()[1]
    assert f"fingerprint: {fp}" in ok.output


def test_doctor_shows_the_speeds_a_run_measured(cluster: Cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from coordinator.app import run_search
    from coordinator.config.experiment import SearchOptions

    script = tmp_path / "t.py"
    script.write_text("print('[coord-metric] {\"loss\": 1}')\n")
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  x: {type: int, low: 0, high: 9}\n")
    reg = cluster.registry("task_routing_rules:\n  - model_type: Custom\n    route_to: [alpha, beta]\n")
    out = run_search(SearchOptions(command=f"python3 {script}", space=str(space), metrics=("loss",), trials=4,
                                   registry=str(reg), run_dir=str(tmp_path / "run")))
    res = CliRunner().invoke(main, ["hosts", "--registry", str(reg), "--run", out["run_dir"]])
    assert res.exit_code == 0, res.output
    assert "measured in" in res.output and "custom" in res.output
    data = json.loads(CliRunner().invoke(main, ["hosts", "--registry", str(reg), "--run", out["run_dir"],
                                                "--json"]).output)
    assert sum(r["trials"] for r in data["speeds"]) == 4 and all(r["median_s"] > 0 for r in data["speeds"])


def test_trust_takes_the_registry_after_the_subcommand_as_the_readme_shows(cluster: Cluster) -> None:
    cluster.known_hosts.write_text("")
    reg = str(cluster.registry())
    res = CliRunner().invoke(main, ["hosts", "trust", "alpha", "--registry", reg, "--yes"])
    assert res.exit_code == 0, res.output
    assert f"trusted: added to {cluster.known_hosts}" in res.output
    assert cluster.known_hosts.read_text() == cluster.hosts["alpha"].known_hosts_line() + "\n"
    again = CliRunner().invoke(main, ["hosts", "--registry", reg, "trust", "alpha", "--yes"])
    assert again.exit_code == 0 and f"trusted: already in {cluster.known_hosts}" in again.output, again.output
    assert cluster.known_hosts.read_text() == cluster.hosts["alpha"].known_hosts_line() + "\n"


def test_trust_replaces_a_changed_key_so_the_host_is_accepted(cluster: Cluster) -> None:
    alpha, beta = cluster.hosts["alpha"], cluster.hosts["beta"]
    # alpha was reinstalled: its line holds a key it no longer has (here beta's)
    stale = f"[127.0.0.1]:{alpha.port} " + " ".join(beta.host_pub.split()[:2])
    cluster.known_hosts.write_text(f"# project hosts\n{stale}\n{beta.known_hosts_line()}\n")
    os.chmod(cluster.known_hosts, 0o600)
    reg = str(cluster.registry())
    rows = {r["platform"]: r for r in json.loads(CliRunner().invoke(main, ["hosts", "--registry", reg,
                                                                           "--json"]).output)}
    assert not rows["alpha"]["ok"] and "CHANGED" in rows["alpha"]["error"]
    res = CliRunner().invoke(main, ["hosts", "--registry", reg, "trust", "alpha", "--yes"])
    assert res.exit_code == 0, res.output
    old = subprocess.run(["ssh-keygen", "-lf", str(beta.root / "host_key.pub")], capture_output=True,
                         text=True).stdout.split()[1]
    assert f"trusted: replaced the changed key ({old}) with this one in {cluster.known_hosts}" in res.output
    assert cluster.known_hosts.read_text() == (f"# project hosts\n{beta.known_hosts_line()}\n"
                                               f"{alpha.known_hosts_line()}\n")
    assert stat.S_IMODE(cluster.known_hosts.stat().st_mode) == 0o600
    rows = {r["platform"]: r for r in json.loads(CliRunner().invoke(main, ["hosts", "--registry", reg,
                                                                           "--json"]).output)}
    assert rows["alpha"]["ok"] and rows["beta"]["ok"], rows


def test_a_malformed_known_hosts_line_is_one_error_in_hosts_and_trust(cluster: Cluster) -> None:
    good = cluster.known_hosts.read_text()
    cluster.known_hosts.write_text(good + "[127.0.0.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ\n")
    reg = str(cluster.registry())
    expected = (f"coord: error: {cluster.known_hosts}:3: malformed known_hosts line (Incorrect padding); "
                "fix or delete this line")
    for args in (["hosts", "--registry", reg], ["hosts", "--registry", reg, "--json"],
                 ["hosts", "trust", "alpha", "--registry", reg, "--yes"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and res.output.strip() == expected, (args, res.output, res.exception)
    assert cluster.known_hosts.read_text().startswith(good)  # trust wrote nothing
