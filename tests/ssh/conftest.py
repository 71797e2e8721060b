"""Fixtures: real sshd servers on loopback, a client key, a project known_hosts, and a
registry that names them. Every test checks that no trial process outlives it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import sshd


@dataclass
class Cluster:
    base: Path
    key: Path
    known_hosts: Path
    hosts: dict[str, sshd.SSHHost]

    def registry(self, rules: str = "", local_slots: int = 1, python: str = sys.executable,
                 extra: str = "") -> Path:
        lines = ["platforms:", "  local:", "    connection: local",
                 "    specs: {cpu_cores: 2, memory_gb: 8}", f"    max_concurrent_jobs: {local_slots}"]
        for name, h in self.hosts.items():
            lines += [f"  {name}:", "    connection: ssh", "    host: 127.0.0.1", f"    port: {h.port}",
                      f"    user: {h.user}", f"    identity_file: {self.key}", f"    python: {python}",
                      f"    work_dir: {h.work_dir}", "    specs: {cpu_cores: 2, memory_gb: 8}",
                      "    max_concurrent_jobs: 2"]
        text = "\n".join(lines) + f"\nknown_hosts: {self.known_hosts}\n" + rules + extra
        path = self.base / f"registry-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        return path

    def trusted(self, *names: str) -> None:
        self.known_hosts.write_text("".join(self.hosts[n].known_hosts_line() + "\n" for n in names))


def _leftovers(hosts: dict[str, sshd.SSHHost]) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() for h in hosts.values()
            if str(h.work_dir) in ln and "remote.py" not in ln.split()[1:2]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if not sshd.available():
        pytest.fail("OpenSSH server missing: scripts/install.sh installs openssh-server")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    key = tmp_path / "client_key"
    pub = sshd.keygen(key)
    hosts = {name: sshd.make_host(tmp_path, name, pub) for name in ("alpha", "beta")}
    for h in hosts.values():
        h.start()
    c = Cluster(tmp_path, key, tmp_path / "known_hosts", hosts)
    c.trusted("alpha", "beta")
    yield c
    for h in hosts.values():
        h.stop()
    deadline = time.monotonic() + 10
    while (left := _leftovers(hosts)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for line in left:
        subprocess.run(["kill", "-9", line.split()[0]], check=False)
    subprocess.run(["pkill", "-CONT", "-f", "sshd"], check=False)
    assert not left, f"trial processes left on the hosts: {left}"
