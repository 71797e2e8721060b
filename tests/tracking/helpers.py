"""Reading what reached MLflow."""

from __future__ import annotations

from typing import Any

from coordinator.tracking import settings


def coord_runs(uri: str, key: str | None = None, deleted: bool = False) -> list[Any]:
    """Every MLflow run coord made in ``uri`` (of one coord run when ``key`` is given)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    with settings.store_lock(uri):  # never creating a SQLite store at the same time as a tracking process
        client = MlflowClient(tracking_uri=uri)
        ids = [e.experiment_id for e in client.search_experiments()]
    where = f"tags.`coord.run_id` = '{key}'" if key else "tags.`coord.kind` != ''"
    out, token = [], None
    while True:
        page = client.search_runs(ids, filter_string=where, max_results=1000, page_token=token,
                                  run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY)
        out.extend(page)
        token = page.token
        if not token:
            return out


def split(runs: list[Any]) -> tuple[list[Any], dict[int, Any]]:
    """(parent runs, child runs by trial number); a duplicate child fails the test."""
    parents = [r for r in runs if r.data.tags.get("coord.kind") == "study"]
    children: dict[int, Any] = {}
    for r in runs:
        if r.data.tags.get("coord.kind") == "trial":
            number = int(r.data.tags["coord.trial"])
            assert number not in children, f"trial {number} logged twice"
            children[number] = r
    return parents, children
