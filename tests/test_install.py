"""scripts/install.sh: installs into the activated virtual environment, never runs pip under
sudo, and touches apt only when a Debian package is missing (as root, else through sudo,
else it prints the command and goes on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install.sh"
PACKAGES = ("openssh-server", "openssh-client", "texlive-latex-base", "texlive-latex-recommended", "slurm-wlm", "munge", "postgresql")
BASH = shutil.which("bash") or "/bin/bash"


def _tool(folder: Path, name: str, body: str) -> None:
    """A stand-in command on PATH that logs how it was called (to check whether it ran)."""
    path = folder / name
    path.write_text(f"#!{BASH}\necho \"{name} $*\" >> {folder / 'calls.log'}\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _env(venv: Path, path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHON", "VIRTUAL_ENV")}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": path, "COORD_XGBOOST": "cpu"}


@pytest.mark.slow
def test_install_into_an_activated_venv_without_apt(tmp_path: Path) -> None:
    """A real venv, the real script, real pip: coord lands in the venv; apt-get (a failing
    stand-in first on PATH) is never called because every Debian package is there."""
    if shutil.which("dpkg"):
        absent = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
        if absent:
            pytest.skip(f"this machine lacks {absent}; install.sh would (rightly) install them")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    _tool(fake, "apt-get", "exit 99")
    proc = subprocess.run([BASH, str(INSTALL)], env=_env(venv, f"{fake}:{venv / 'bin'}:{os.environ['PATH']}"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _calls(fake) == []
    assert f"coord installed into the virtual environment {venv}" in proc.stdout
    version = subprocess.run([str(venv / "bin" / "coord"), "--version"], capture_output=True, text=True,
                             env=_env(venv, os.environ["PATH"]), cwd=tmp_path)
    assert version.returncode == 0 and "version" in version.stdout, version.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", "coord"], capture_output=True,
                           text=True, env=_env(venv, os.environ["PATH"]), cwd=tmp_path).stdout
    assert f"Location: {venv}" in where and f"Editable project location: {ROOT}" in where, where


def _fake_setup(tmp_path: Path, uid: int, sudo: bool) -> tuple[Path, dict[str, str]]:
    """Stand-ins for the parts around the apt decision: dpkg says openssh-server is missing,
    id says who we are, a python records the pip calls. PATH holds only these and the few
    real tools the script needs, so a sudo elsewhere on this machine cannot leak in."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    _tool(fake, "dpkg", '[ "$2" = openssh-server ] && exit 1; exit 0')
    _tool(fake, "apt-get", "exit 0")
    _tool(fake, "id", f"echo {uid}")
    if sudo:
        _tool(fake, "sudo", 'exec "$@"')
    for name in ("bash", "dirname", "awk"):
        real = shutil.which(name)
        assert real, name
        (fake / name).symlink_to(real)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _tool(venv / "bin", "python", "exit 0")
    return fake, _env(venv, f"{fake}:{venv / 'bin'}")


def test_missing_debian_packages_as_root_are_installed_with_apt(tmp_path: Path) -> None:
    fake, env = _fake_setup(tmp_path, uid=0, sudo=False)
    proc = subprocess.run([BASH, str(INSTALL)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(fake)
    assert any(c.startswith("apt-get install") and c.endswith(" openssh-server") for c in calls), calls
    assert not any(c.startswith("sudo") for c in calls)


def test_without_root_apt_goes_through_sudo_but_pip_never_does(tmp_path: Path) -> None:
    fake, env = _fake_setup(tmp_path, uid=1000, sudo=True)
    proc = subprocess.run([BASH, str(INSTALL)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(fake)
    assert any(c.startswith("sudo ") and "apt-get update" in c for c in calls), calls
    assert any(c.startswith("apt-get install") for c in calls), calls
    pip_calls = _calls(tmp_path / "venv" / "bin")
    assert len(pip_calls) >= 2 and all(c.startswith("python -m pip install") for c in pip_calls[:2]), pip_calls
    assert not any("pip" in c for c in calls if c.startswith("sudo"))


def test_without_root_or_sudo_it_prints_the_apt_command_and_goes_on(tmp_path: Path) -> None:
    fake, env = _fake_setup(tmp_path, uid=1000, sudo=False)
    proc = subprocess.run([BASH, str(INSTALL)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("apt-get") for c in _calls(fake))
    assert "not root and no sudo" in proc.stderr and "openssh-server" in proc.stderr
    assert ("as root run: apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends openssh-server") in proc.stderr
    assert any(c.startswith("python -m pip install -q -e") for c in _calls(tmp_path / "venv" / "bin"))
