"""The best trial's model into the MLflow model registry, once its search has ended.

No trial keeps a model trained on all the data (a built-in trial trains one model per
validation fold, and only the best trial's fold models are kept, in its checkpoint). So
when a search ends, its best complete trial (by the first objective) is refit here, on
this machine, from its recorded recipe: model, parameters, seed, best step and the data
file, whose sha256 must still be the one the run recorded (a changed file is refused:
the model would not be the trial's). ``refit.py`` does it in a process of its own, logs the
model into the trial's MLflow run with its library's flavour and a signature, and
registers it as ``<run name>`` (``--register-as NAME``), ``<name>-<study>`` when the run
compares several models. Trials of ``--command`` scripts have no model coord knows how to
rebuild: none is logged.

Done once: a model version whose run is the best trial's MLflow run is not made again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from coordinator import resources
from coordinator.config.datasets import sha256
from coordinator.store.files import read_json
from coordinator.tracking.mlflowlog import Syncer
from coordinator.tracking.runview import KEY, STUDY, TRIAL

log = logging.getLogger(__name__)
REFIT = Path(__file__).with_name("refit.py")
BUILTIN = ("xgboost", "random_forest", "glm", "mlp")
REFIT_TIMEOUT_S = 1800.0


def registered_name(syncer: Syncer, study: str, register_as: str | None) -> str:
    base = register_as or str(syncer.view.config.get("name") or "coord")
    name = f"{base}-{study}" if len(syncer.view.studies) > 1 else base
    return name.replace("/", "-").replace(":", "-")


def _data(syncer: Syncer, number: int, attempt: int) -> dict[str, Any]:
    """The data spec the trial trained on (its last attempt's spec.json), checked unchanged."""
    spec = read_json(syncer.view.store.attempt_dir(number, attempt) / "spec.json")
    data = dict(spec.get("data") or {})
    path = Path(str(data.get("path", "")))
    if not path.is_file():
        raise RuntimeError(f"trial {number}'s data file {path} is gone; its model cannot be refit")
    if data.get("sha256") and sha256(path) != data["sha256"]:
        raise RuntimeError(f"trial {number}'s data file {path} changed since the run (sha256 was "
                           f"{data['sha256']}); its model is not refit")
    return data


def log_best_models(syncer: Syncer, uri: str, register_as: str | None,
                    timeout_s: float = REFIT_TIMEOUT_S) -> list[dict[str, str]]:
    """Refit, log and register each study's best model; return {study, name, version, trial}
    for each (made now or before). Nothing until the search has ended."""
    import subprocess

    if not syncer.view.timeline.done:
        return []
    client, out = syncer.client, []
    for study in syncer.view.studies:
        model, study_name = study.get("model"), str(study.get("name"))
        best = syncer.best(study_name) if model in BUILTIN else None
        if best is None or best.result is None or not syncer.children.get(best.number, ("", False))[1]:
            continue
        run_id = syncer.children[best.number][0]
        name = registered_name(syncer, study_name, register_as)
        found = [mv for mv in client.search_model_versions(f"run_id='{run_id}'") if mv.name == name]
        if found:
            out.append({"study": study_name, "name": name, "version": str(found[0].version),
                        "trial": str(best.number)})
            continue
        result = best.result.to_json() if best.result else {}  # best() returns committed trials
        request = {"runners": str(resources.folder("runners")), "model": model, "params": result["params"],
                   "best_step": (result.get("metrics") or {}).get("best_step"), "seed": result.get("seed", 0),
                   "data": _data(syncer, best.number, int(result.get("attempt", 1))), "run_id": run_id, "name": name}
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        proc = subprocess.run([sys.executable, str(REFIT)], input=json.dumps(request), capture_output=True,
                              text=True, env=env, timeout=timeout_s)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"refitting trial {best.number}'s {model} model failed: {why}")
        made = json.loads(lines[-1])
        version = str(made["version"])
        for key, value in ((KEY, syncer.view.key), (STUDY, study_name), (TRIAL, str(best.number))):
            client.set_model_version_tag(name, version, key, value)
        client.set_tag(run_id, "coord.registered_model", f"{name}/{version}")
        log_ = syncer.view.trial_log(best)  # logging the model reopened the run: its own times again
        client.set_terminated(run_id, log_.status, end_time=log_.end_ms)
        out.append({"study": study_name, "name": name, "version": version, "trial": str(best.number)})
    return out
