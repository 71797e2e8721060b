"""Where a run is tracked, and what the tracking knows about the machine and the code.

The tracking URI, in order: ``--mlflow-uri``, ``MLFLOW_TRACKING_URI``, the URI the run was
tracked to before (``mlflow.json`` in the run directory, so ``coord resume`` and ``coord sync``
go on where the search logged), else a SQLite database shared by every run under the runs
root: ``sqlite:///<runs>/mlflow.db``, its artefacts in ``<runs>/mlartifacts``.

A password in a URI (``https://user:secret@host``) is never written anywhere: ``mlflow.json``
and every message carry the URI without it; MLflow's own ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` are the way to give credentials.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator import provenance
from coordinator.errors import ConfigError
from coordinator.store.files import RUN_FILE, read_json, write_json

RECORD = "mlflow.json"  # in the run directory: the URI, the registered name, the run's key, the git state
DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"
# MLflow's defaults retry an unreachable server for minutes; the follower retries by itself
ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_LOGGING_LEVEL": "WARNING",
                "MLFLOW_DISABLE_TELEMETRY": "true"}
QUIET = ("mlflow", "alembic", "sqlalchemy", "urllib3", "git", "databricks")
_PASSWORD = re.compile(r"(://[^/@:]*):[^/@]*@")
# the tracking stores MLflow itself has (a database with a driver too: postgresql+psycopg2://),
# besides a plain path; plugins add theirs under this entry-point group
SCHEMES = ("file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
PLUGIN_GROUP = "mlflow.tracking_store"


@dataclass(frozen=True)
class TrackingOptions:
    """What the user asked for: on (the default) or off, a URI, a registered model name."""

    enabled: bool = True
    uri: str | None = None  # --mlflow-uri
    register_as: str | None = None  # --register-as


def redact(uri: str) -> str:
    """The URI without a password."""
    return _PASSWORD.sub(r"\1:***@", uri)


def default_uri(run_dir: Path) -> str:
    """``sqlite:///<runs root>/mlflow.db``: the runs root the run was started with (``--runs``,
    relative to the directory coord ran in), else the folder holding the run."""
    cfg = read_json(run_dir / RUN_FILE)
    root = (cfg.get("options") or {}).get("runs_root")
    base = Path(cfg.get("cwd") or run_dir.parent)
    folder = (base / root) if root else run_dir.parent
    return "sqlite:///" + str(folder.absolute() / DB_NAME)


def recorded(run_dir: Path) -> dict[str, Any]:
    try:
        data = read_json(run_dir / RECORD)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_uri(run_dir: Path, uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or recorded(run_dir).get("uri") or default_uri(run_dir)


def scheme(uri: str) -> str:
    """The URI's scheme as MLflow picks its store by it ('' for a plain path)."""
    found = urllib.parse.urlparse(uri).scheme.lower()
    if len(found) == 1:  # a Windows drive letter: a path
        return ""
    return next((db for db in DATABASES if found.startswith(db)), found)


def check_uri(uri: str | None, source: str = "--mlflow-uri") -> None:
    """A URI no MLflow store takes is the user's mistake: one error at the start, naming
    where it came from (``source``) and the valid schemes, instead of a tracking process that
    would retry it in the background for the whole search."""
    if not uri:
        return
    found = scheme(uri)
    if found in ("", *SCHEMES):
        return
    from importlib.metadata import entry_points

    plugins = {e.name for e in entry_points(group=PLUGIN_GROUP)}
    if found not in plugins:
        raise ConfigError(f"no MLflow tracking store takes {redact(uri)!r} (scheme {found!r}; a plain path "
                          "is a local file store)", key=source, valid=[*SCHEMES, *plugins])


def check_uris(uri: str | None) -> None:
    """The flag's URI, else the environment's, as ``resolve_uri`` would take them."""
    if uri:
        check_uri(uri)
    else:
        check_uri(os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI")


def run_key(run_dir: Path) -> str:
    """The run's stable name in MLflow (tag ``coord.run_id``): its directory's name and a hash
    of its run.json (written once, when the run was created), so two runs of the same name
    and second, in two runs folders, stay apart; kept in mlflow.json once made."""
    key = recorded(run_dir).get("key")
    if isinstance(key, str) and key:
        return key
    digest = hashlib.sha256((run_dir / RUN_FILE).read_bytes()).hexdigest()[:10]
    return f"{run_dir.name}-{digest}"


def remember(run_dir: Path, uri: str, register_as: str | None, git: dict[str, str] | None = None) -> dict[str, Any]:
    """Write mlflow.json (URI without password, registered name, key, git state at the start)."""
    data = recorded(run_dir)
    data.update({"uri": redact(uri), "key": run_key(run_dir)})
    if register_as:
        data["register_as"] = register_as
    if git is not None and "git" not in data:  # the state when the search started, kept
        data["git"] = git
    write_json(run_dir / RECORD, data, durable=False)
    return data


def artifact_root(uri: str) -> str | None:
    """For a SQLite (or other local database file) store: ``<its folder>/mlartifacts``; a
    server decides for itself (None). MLflow's own default, ``./mlruns`` under whatever
    directory coord runs in, would scatter the artefacts."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS).absolute().as_uri()


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[bool]:
    """One process at a time opens a SQLite store: MLflow creates and migrates a new one on
    first use, and two processes doing it at once (two searches starting under one runs
    folder) can leave it broken for good (MLflow 3.17: "table _alembic_tmp_tags already
    exists" on every later open). An flock on a hidden file beside it; yields True when it
    took one (other stores: no lock, False)."""
    if not uri.startswith("sqlite:///"):
        yield False
        return
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.parent / f".{db.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # releases the flock


def prepare_environment() -> None:
    """Before MLflow is imported (on the caller's thread: the environment is not changed
    while other threads may start processes): quiet, quick to give up, no telemetry. A
    value the user set wins."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def quiet_loggers() -> None:
    """MLflow and alembic log each database migration and registration at INFO, urllib3 each
    retry against a server that is down as a warning, on the user's terminal; coord says
    what matters itself, once (``-vv`` shows them again)."""
    level = logging.DEBUG if logging.getLogger("coordinator").getEffectiveLevel() < logging.INFO else logging.ERROR
    for name in QUIET:
        logging.getLogger(name).setLevel(level)


def git_state(cwd: str | None) -> dict[str, str]:
    """The commit and dirty flag of the git repository ``cwd`` is in (``provenance.git_state``)."""
    return provenance.git_state(cwd)


def versions() -> dict[str, str]:
    """This host's Python and library versions (the coordinator's host)."""
    return provenance.versions()
