"""A real PostgreSQL server for tests: Debian's binaries, its own data directory in a
temporary folder, listening on 127.0.0.1 only (and a socket in that folder), run as the
``postgres`` system user (the server refuses root), trust authentication for the test role,
stopped afterwards. Never the machine's own cluster."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.tracking.server import free_port  # the one free-loopback-port helper of the tests


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def available() -> str | None:
    if bindir() is None:
        return "PostgreSQL is not installed (scripts/install.sh installs Debian's postgresql)"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "the test server is started as the postgres user, which needs root and runuser"
    try:
        import psycopg  # noqa: F401 - the driver SQLAlchemy's postgresql:// uses
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


@dataclass
class PgServer:
    root: Path
    port: int = 0

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120,
                       cwd=self.root)

    def start(self) -> PgServer:
        bin_ = bindir()
        assert bin_ is not None
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres")
        self.root.chmod(0o755)
        parent = self.root.parent
        while parent != parent.parent:  # the postgres user must reach its folder
            parent.chmod(parent.stat().st_mode | 0o005)
            parent = parent.parent
        self.port = free_port()
        self._as_postgres(str(bin_ / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "coord")
        self._as_postgres(str(bin_ / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w",
                          "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}", "start")
        return self

    def database(self, name: str) -> str:
        bin_ = bindir()
        assert bin_ is not None
        self._as_postgres(str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "coord", name)
        return f"postgresql://coord@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        bin_ = bindir()
        if bin_ is not None and (self.root / "data" / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(bin_ / "pg_ctl"), "-D", str(self.root / "data"),
                            "-m", "immediate", "stop"], capture_output=True, timeout=60, check=False)
