"""``coord dashboard RUN``: optuna-dashboard over a run's study storage, read-only, on
127.0.0.1.

The storage is the one the search writes (the run's journal file, or its ``--storage``
database), opened as a reader while a search may be live: the journal is append-only and
read without its lock. Every write the dashboard could make (a note, a study created or
deleted, a trial told from the page) goes through ``ReadOnlyStorage``, which refuses it:
the run directory and its study stay the search's alone. The server binds to 127.0.0.1
only (``host`` is not an option); reach it from another machine through an SSH tunnel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coordinator.errors import ConfigError
from coordinator.search import open_storage
from coordinator.store.rundir import RunStore

HOST = "127.0.0.1"


class ReadOnly(ConfigError):
    """A write the dashboard attempted on a run's study."""


def read_only(storage: Any, refusal: Callable[[str], Exception] = ReadOnly) -> Any:
    """``storage`` behind a BaseStorage whose every write raises ``refusal(message)`` (reads
    are passed on)."""
    from optuna.storages import BaseStorage

    writes = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
              "set_trial_user_attr", "set_trial_system_attr")

    def refuse(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise refusal(f"coord dashboard is read-only: {name} refused (the search owns its study)")
        return method

    def passes(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(storage, name)(*args, **kwargs)
        return method

    reads = [n for n in dir(BaseStorage) if not n.startswith("_") and n not in writes]
    namespace = {**{n: refuse(n) for n in writes}, **{n: passes(n) for n in reads}}
    return type("ReadOnlyStorage", (BaseStorage,), namespace)()


def open_read_only(run: Path, refusal: Callable[[str], Exception] = ReadOnly) -> tuple[Any, Sequence[str]]:
    """The run's study storage, read-only, and its studies' names."""
    store = RunStore.open(run)
    url = (store.config.get("options") or {}).get("storage")
    storage = read_only(open_storage(store.root, url), refusal)
    return storage, [s.study_name for s in storage.get_all_studies()]


def serve(run: Path, port: int, ready: Callable[[], None] = lambda: None) -> None:
    """Serve the dashboard until interrupted (blocks). ``ready`` is called once the port
    listens (the URL printed before that may not answer yet, or belong to another program)."""
    try:
        from optuna_dashboard._app import create_app
    except ImportError:
        raise ConfigError("coord dashboard needs optuna-dashboard: pip install optuna-dashboard "
                          "(scripts/install.sh installs it)") from None
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from bottle import HTTPError

    # a refused write is answered 403 with the reason (the dashboard's views turn an HTTPError
    # into its status), not 500 with a traceback in the console: nothing went wrong
    storage, _ = open_read_only(run, lambda message: HTTPError(403, message))
    app = create_app(storage)
    server = make_server(HOST, port, app, handler_class=WSGIRequestHandler)  # binds here
    ready()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

