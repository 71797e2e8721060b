"""Hostile and damaged input (issue 8, items 8-12): each gets one readable line, a non-zero
exit and no traceback, quickly, and nothing is written when it is refused."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from coordinator.app import run_search
from coordinator.cli import main
from coordinator.config.experiment import SearchOptions, resolve
from tests.conftest import write_script

SPACE = "params:\n  x: {type: int, low: 0, high: 9}\n"
PLATFORM = "platforms:\n  box:\n    specs: {cpu_cores: 2, memory_gb: 4}\n    max_concurrent_jobs: 1\n"


def _one_error(res: Result, code: int = 2) -> str:
    """The single line a user mistake gets, without its 'coord: error: ' prefix."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coord: error: "), res.output
    return lines[0][len("coord: error: "):]


def _bomb() -> str:
    """Nine levels of nine aliases: 28 nodes written, 387 million values once expanded."""
    lines = ["a: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _invoke(how: str, path: Path, runs: Path) -> Result:
    args = {"validate": ["validate", str(path)],
            "registry": ["search", "--runs", str(runs), "--registry", str(path)],
            "space": ["search", "--runs", str(runs), "--space", str(path)]}[how]
    return CliRunner().invoke(main, args)


# --- item 8: alias bombs and oversize files ------------------------------------------------

@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["validate", "registry", "space"])
def test_a_yaml_alias_bomb_is_one_error_at_once(tmp_path: Path, how: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb())
    msg = _one_error(_invoke(how, bomb, tmp_path / "runs"))
    assert msg.startswith(f"{bomb}: aliases expand this file to ") and "at most 100000 more" in msg, msg
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["validate", "registry", "space"])
def test_an_oversize_config_file_is_one_error_at_once(tmp_path: Path, how: str) -> None:
    big = tmp_path / "big.yaml"
    if how == "space":
        big.write_text("params:\n" + "".join(f"  p{i}: {{type: int, low: 0, high: 9}}\n" for i in range(60_000)))
    else:  # a well-formed registry of 30,000 platforms, about 2 MB
        big.write_text("platforms:\n" + "".join(f"  p{i}:\n    specs: {{cpu_cores: 2, memory_gb: 4}}\n"
                                                f"    max_concurrent_jobs: 1\n" for i in range(30_000)))
    size = big.stat().st_size / 1e6
    assert size > 1.5
    msg = _one_error(_invoke(how, big, tmp_path / "runs"))
    assert msg == f"{big}: file is {size:.1f} MB; a configuration file may be at most 1 MB", msg
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(10)
def test_a_recursive_alias_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("platforms: &p\n  box: *p\n")
    msg = _one_error(_invoke("validate", path, tmp_path / "runs"))
    assert msg == f"{path}:1: invalid YAML: an alias refers to a node that contains it (a recursive structure)"


def test_ordinary_aliases_and_merge_keys_still_load_and_keep_their_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("platforms:\n  a: &a\n    specs: {cpu_cores: 2, memory_gb: 4}\n    max_concurrent_jobs: 2\n"
                    "  b:\n    <<: *a\n    max_concurrent_jobs: 1\n")  # overriding a merged key is no duplicate
    res = CliRunner().invoke(main, ["validate", str(good)])
    assert res.exit_code == 0 and "valid registry: 2 platforms (a, b)" in res.output, res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("platforms:\n  a:\n    specs: &s {cpu_cores: 2, memory_gb: 4}\n"
                   "  b:\n    specs: *s\n    max_concurent_jobs: 2\n")
    msg = _one_error(CliRunner().invoke(main, ["validate", str(bad)]))
    assert msg.startswith(f"{bad}:6: platforms.b.max_concurent_jobs: unknown key"), msg


# --- item 9: duplicate keys, unknown model types ------------------------------------------

@pytest.mark.parametrize(("text", "line", "key", "first"), [
    (PLATFORM + "  box:\n    specs: {cpu_cores: 64, memory_gb: 256}\n", 5, "platforms.box", 2),
    ("platforms:\n  box:\n    specs: {cpu_cores: 2, memory_gb: 4, cpu_cores: 8}\n", 3,
     "platforms.box.specs.cpu_cores", 3),
    (PLATFORM + "allow_local_fallback: true\nallow_local_fallback: false\n", 6, "allow_local_fallback", 5),
])
def test_a_duplicate_key_is_refused_naming_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                             first: int) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(text)
    name = key.rsplit(".", 1)[-1]
    expected = (f"{reg}:{line}: {key}: duplicate key '{name}' (first at line {first}); a second definition "
                "would silently replace the first")
    assert _one_error(_invoke("validate", reg, tmp_path / "runs")) == expected
    assert _one_error(_invoke("registry", reg, tmp_path / "runs")) == expected
    assert not (tmp_path / "runs").exists()


def test_a_duplicate_parameter_in_a_space_is_refused(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  max_depth: {type: int, low: 3, high: 9}\n  max_depth: {type: int, low: 1, high: 2}\n")
    msg = _one_error(_invoke("space", space, tmp_path / "runs"))
    assert msg.startswith(f"{space}:3: params.max_depth: duplicate key 'max_depth' (first at line 2)"), msg
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_model_type_is_refused_with_a_did_you_mean(tmp_path: Path) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(PLATFORM + "task_routing_rules:\n  - model_type: XGBoosst\n    route_to: box\n")
    expected = (f"{reg}:6: task_routing_rules[0].model_type: unknown model type 'XGBoosst'; did you mean "
                "'XGBoost'? (valid: *, Custom, GLM, NeuralNetwork, RandomForest, XGBoost)")
    assert _one_error(_invoke("validate", reg, tmp_path / "runs")) == expected
    assert _one_error(_invoke("registry", reg, tmp_path / "runs")) == expected
    assert _one_error(CliRunner().invoke(main, ["plan", "--registry", str(reg)])) == expected
    assert not (tmp_path / "runs").exists()


def test_a_custom_model_type_is_a_warning_unless_the_search_routes_by_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(PLATFORM + "task_routing_rules:\n  - model_type: RL_DQN\n    route_to: box\n"
                   "  - model_type: GLMM\n    route_to: box\n")
    rl = (f"{reg}:6: task_routing_rules[0].model_type: model type 'RL_DQN' is not a built-in one, so this rule "
          "applies only to --command searches run with --model-type RL_DQN")
    glmm = f"{reg}:8: task_routing_rules[1].model_type: model type 'GLMM' is not a built-in one"
    for args in (["validate", str(reg)], ["plan", "--registry", str(reg), "--model", "glm"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
        assert len(warnings) == 2 and warnings[0].startswith(f"warning: {rl}"), res.output
        assert warnings[1].startswith(f"warning: {glmm}") and "did you mean 'GLM'?" in warnings[1], res.output

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    with caplog.at_level(logging.WARNING, logger="coordinator"):
        resolve(SearchOptions(command="python3 train.py", model_type="RL_DQN", space=str(space), metrics=("loss",),
                              registry=str(reg)))
    assert [r.getMessage().split(" is not")[0] for r in caplog.records] == [glmm.split(" is not")[0]]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coordinator"):
        resolve(SearchOptions(models=("glm",), registry=str(reg)))
    assert [r.getMessage()[:len(rl)] for r in caplog.records][:1] == [rl] and len(caplog.records) == 2


# --- item 10: a malformed known_hosts line, before the run exists --------------------------

def test_a_malformed_known_hosts_line_stops_a_search_before_its_run_exists(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# project hosts\n[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ\n")
    reg = tmp_path / "reg.yaml"
    reg.write_text(PLATFORM + "  gpu:\n    connection: ssh\n    host: 127.0.0.1\n    port: 2222\n"
                   f"    specs: {{cpu_cores: 2, memory_gb: 4}}\nknown_hosts: {known}\n")
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["search", "--runs", str(runs), "--model", "glm", "--trials", "1",
                                    "--registry", str(reg)])
    assert _one_error(res) == f"{known}:2: malformed known_hosts line (Incorrect padding); fix or delete this line"
    assert not runs.exists()  # no half-made run for `coord status` to call resumable


def test_a_known_hosts_file_damaged_during_a_run_stops_that_host_not_the_search(tmp_path: Path) -> None:
    from coordinator.backends.sshconn import HostConnection
    from coordinator.config.registry import load_registry
    from coordinator.errors import HostKeyError

    known = tmp_path / "known_hosts"
    known.write_text("127.0.0.1 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n")  # key data paramiko raises on
    reg = tmp_path / "reg.yaml"
    reg.write_text(PLATFORM + "  gpu:\n    connection: ssh\n    host: 127.0.0.1\n    port: 9\n"
                   "    specs: {cpu_cores: 2, memory_gb: 4}\n")
    with pytest.raises(HostKeyError) as err:  # a HostError: the loop routes around the host
        HostConnection(load_registry(reg).platforms["gpu"], known).connect()
    assert str(err.value) == f"gpu (127.0.0.1): {known}:1: malformed known_hosts line (n must be >= 3.); fix or " \
                             "delete this line"


# --- item 11: a CSV that is not UTF-8, a damaged run.json ---------------------------------

def test_non_utf8_bytes_after_the_csv_header_are_one_error(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    rows = [f"{i},{i % 7},{i % 2}\n".encode() for i in range(3000)]  # past the first read the header takes
    rows[2500] = b"2500,caf\xe9,0\n"
    data.write_bytes(b"a,b,y\n" + b"".join(rows))
    runs = tmp_path / "runs"
    res = CliRunner().invoke(main, ["search", "--runs", str(runs), "--data", str(data), "--target", "y"])
    assert _one_error(res) == (f"{data}:2502: not UTF-8 text (byte 0xe9 at byte 9 of the line); save the CSV "
                               "as UTF-8")
    assert not runs.exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("finished")
    script = write_script(base / "t.py", "print('[coord-metric] {\"loss\": %d}' % p['x'])\n")
    space = base / "space.yaml"
    space.write_text(SPACE)
    run_search(SearchOptions(command=f"{sys.executable} {script}", space=str(space), metrics=("loss",), trials=1,
                             run_dir=str(base / "run")))
    return base / "run"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not an object"])
@pytest.mark.parametrize("command", ["status", "report", "resume"])
def test_a_damaged_run_json_is_one_error(finished_run: Path, tmp_path: Path, damage: str, command: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "run.json"
    text = path.read_bytes()
    path.write_bytes({"truncated": text[:len(text) // 2], "garbage": b"\x00\xff\xfe\x9c" + text[4:],
                      "not an object": b"[1, 2, 3]\n"}[damage])
    msg = _one_error(CliRunner().invoke(main, [command, str(run)]))
    assert msg.startswith(f"{path} is damaged ("), msg
    assert msg.endswith("it holds the run's configuration, written when the run was created, and the run cannot "
                        "be read without it"), msg


def test_an_intact_run_still_reads(finished_run: Path) -> None:
    res = CliRunner().invoke(main, ["status", str(finished_run)])
    assert res.exit_code == 0 and "finished" in res.output, res.output


# --- item 12: --run-dir that cannot be a new run ------------------------------------------

def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["a file", "under a file", "a non-empty directory"])
def test_a_run_dir_that_cannot_be_a_new_run_is_refused_before_anything_is_written(tmp_path: Path,
                                                                                   case: str) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("\\chapter{One}\n")
    target, expected = {
        "a file": (notes, f"--run-dir {notes} exists and is not a directory; choose a new or empty directory"),
        "under a file": (notes / "run", f"cannot create --run-dir {notes / 'run'}: {notes} is not a directory"),
        "a non-empty directory": (thesis, f"--run-dir {thesis} is not empty and is not a coord run (it holds "
                                          "'chapter1.tex'); choose a new or empty directory"),
    }[case]
    before = _tree(tmp_path)
    res = CliRunner().invoke(main, ["search", "--model", "glm", "--trials", "1", "--runs", str(tmp_path / "runs"),
                                    "--run-dir", str(target)])
    assert _one_error(res) == expected
    assert _tree(tmp_path) == before


def test_an_empty_existing_run_dir_is_used(tmp_path: Path) -> None:
    empty = tmp_path / "run"
    empty.mkdir()
    script = write_script(tmp_path / "t.py", "print('[coord-metric] {\"loss\": 1}')\n")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = run_search(SearchOptions(command=f"{sys.executable} {script}", space=str(space), metrics=("loss",),
                                   trials=1, run_dir=str(empty)))
    assert out["complete"] == 1 and (empty / "run.json").is_file()


def test_a_csv_field_too_large_to_parse_is_one_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from coordinator.cli import main

    data = tmp_path / "big.csv"
    data.write_text("season,x,home_win\n2020,1,0\n2021,\"" + "y" * 200_000 + "\",1\n")
    res = CliRunner().invoke(main, ["search", "--data", str(data), "--target", "home_win", "--runs", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "cannot parse the CSV file" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()


def test_a_rule_that_declares_its_custom_type_is_not_warned_about(tmp_path: Path) -> None:
    """``command_only: true``: the rule is for --command searches on purpose (the example
    registry's RL_DQN rule), so coord validate says nothing; a built-in near-miss is still refused."""
    reg = tmp_path / "reg.yaml"
    reg.write_text(PLATFORM + "task_routing_rules:\n  - model_type: RL_DQN\n    command_only: true\n    route_to: box\n")
    res = CliRunner().invoke(main, ["validate", str(reg)])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    example = Path(__file__).parents[1] / "registry" / "hardware_registry.example.yaml"
    res = CliRunner().invoke(main, ["validate", str(example)])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    reg.write_text(PLATFORM + "task_routing_rules:\n  - model_type: XGBoosst\n    command_only: true\n    route_to: box\n")
    assert "did you mean 'XGBoost'?" in CliRunner().invoke(main, ["validate", str(reg)]).output
