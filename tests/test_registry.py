from pathlib import Path

import pytest

from coordinator import resources
from coordinator.config.localhost import default_registry
from coordinator.config.registry import load_registry
from coordinator.errors import RegistryError

EXAMPLE = resources.folder("registry") / "hardware_registry.example.yaml"


def test_example_registry_reproduces_the_users_two_machines() -> None:
    reg = load_registry(EXAMPLE)
    m4, gpu = reg.platforms["local_m4"], reg.platforms["remote_4090"]
    assert (m4.specs.cpu_cores, m4.specs.memory_gb, m4.max_concurrent_jobs) == (10, 24.0, 4)
    assert gpu.connection == "ssh" and gpu.host == "gpu-box.local"
    assert [g.model for g in gpu.specs.gpus] == ["RTX 4090"] and gpu.gpu_slots == 2
    xgb = reg.rule_for("XGBoost")
    assert [c.platform for c in xgb.candidates] == ["remote_4090", "local_m4"]
    assert reg.rule_for("glm").candidates[0].reason == "CPU-bound, R tidymodels optimized"


def test_seed_format_gpu_string_is_understood(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text('platforms:\n  box:\n    specs: {cpu_cores: 16, memory_gb: 64, gpu: "RTX 4090 24GB"}\n'
                 "    max_concurrent_jobs: 2\n")
    gpu = load_registry(p).platforms["box"].specs.gpus[0]
    assert (gpu.model, gpu.memory_gb) == ("RTX 4090 24GB", 24.0)


def test_default_registry_describes_this_machine() -> None:
    reg = default_registry()
    local = reg.platforms["local"]
    assert local.connection == "local" and local.specs.cpu_cores >= 1 and local.specs.memory_gb > 0
    assert local.max_concurrent_jobs >= 1


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("platforms:\n  a:\n    specs: {cpu_cores: 2, memory_gb: 4, memroy: 3}\n", 3,
     "platforms.a.specs.memroy: unknown key; did you mean 'memory_gb'? (valid: cpu_cores, cuda_version, gpu, gpus, memory_gb)"),
    ("platforms:\n  a:\n    specs: {cpu_coers: 2, memory_gb: 4}\n", 3,
     "platforms.a.specs.cpu_cores: required key is missing ('cpu_coers' is here: a typo of it?)"),
    ("platforms:\n  a:\n    specs:\n      cpu_cores: two\n      memory_gb: 4\n", 4,
     "platforms.a.specs.cpu_cores: expected an integer, got a string 'two'"),
    ("platforms:\n  a:\n    specs: {cpu_cores: 2, memory_gb: 4}\n    connection: ftp\n", 4,
     "unknown value 'ftp' (valid: k8s, kubernetes, local, slurm, ssh)"),
    ("platforms:\n  a:\n    specs: {cpu_cores: 2, memory_gb: 4}\ntask_routing_rules:\n"
     "  - model_type: GLM\n    route_to: b\n", 6, "task_routing_rules[0].route_to: unknown platform 'b' (valid: a)"),
    ("platforms:\n  a:\n    connection: ssh\n    host: -oProxyCommand=x\n    specs: {cpu_cores: 1, memory_gb: 1}\n",
     4, "platforms.a.host: '-oProxyCommand=x' is not a valid host name"),
    ("platforms:\n  a:\n    specs: {cpu_cores: 2, memory_gb: 4\n", None, "invalid YAML"),
    ("", None, "file is empty"),
    ("x: !!python/object/apply:os.system ['touch CANARY']\n", 1, "could not determine a constructor"),
    ("platforms: {}\n", 1, "platforms: at least one platform is required"),
])
def test_bad_registries_name_file_line_and_key(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RegistryError) as err:
        load_registry(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:{line}:" if line else f"{p}:"), msg
    assert fragment in msg
    assert not (tmp_path / "CANARY").exists()
    assert p.read_text() == text  # never overwritten


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="file not found"):
        load_registry(tmp_path / "nope.yaml")
