"""The best trial's model, refit and logged to MLflow: run as a script, in its own process.

A built-in trial keeps no final model: it trains one model per validation fold (its
checkpoint holds those, and only until the run ends). The model registry gets one model
trained on every row of the data, with the trial's parameters and seed, for the trial's
best step (``best_step``: boosting rounds, trees or epochs), built by the runners' own code
(``runners/trialkit.py`` reads and encodes the data exactly as the trials did). It is logged
with its library's MLflow flavour and a signature, into the trial's MLflow run, and
registered:

    xgboost        mlflow.xgboost   (a Booster; predicts the positive class's probability)
    random_forest  mlflow.sklearn   (median imputation + the forest; predict_proba)
    glm            mlflow.sklearn   (median imputation + scaling + the linear model; predict_proba)
    mlp            mlflow.pytorch   (imputation, standardisation and sigmoid inside; pt2: it
                                     takes a float32 array, e.g. X.to_numpy("float32"))

It runs on this machine's CPU, whatever device the trial had. A separate process keeps the
runners' modules (``trialkit``, ``dataprep``, ...) off the coordinator's ``sys.path`` and
MLflow's model-logging output off the user's terminal.

    python refit.py < request.json     (request: see ``tracking/models.py``)

The last line printed is ``{"name": ..., "version": ...}``. Stdlib and the ML libraries only:
it never imports ``coordinator``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

PIP = {"xgboost": (("xgboost", "xgboost"),), "random_forest": (("scikit-learn", "sklearn"), ("skops", "skops")),
       "glm": (("scikit-learn", "sklearn"), ("skops", "skops")), "mlp": (("torch", "torch"),)}


def _iterate(module: Any, params: dict[str, Any], X: Any, y: Any, ctx: Any) -> Any:
    """The last state ``fit_steps`` yields, trained on every row."""
    state = None
    for _step, _pred, save in module.fit_steps(dict(params), X, y, X.iloc[:2], ctx):
        state = save
    if state is None:
        raise RuntimeError("the model trained no step")
    return state()


def _imputer(X: Any) -> Any:
    from sklearn.impute import SimpleImputer

    # trialkit.impute: the training rows' medians, 0 for a column with none
    imputer = SimpleImputer(strategy="median", keep_empty_features=True, fill_value=0.0)
    return imputer.set_output(transform="pandas").fit(X)  # the next step sees the column names


def _xgboost(module: Any, params: dict[str, Any], X: Any, y: Any, ctx: Any) -> Any:
    import xgboost as xgb

    booster = xgb.Booster(model_file=bytearray(_iterate(module, params, X, y, ctx)["model"]))
    booster.feature_names = [str(c) for c in X.columns]
    return booster


def _random_forest(module: Any, params: dict[str, Any], X: Any, y: Any, ctx: Any) -> Any:
    from sklearn.pipeline import Pipeline

    forest = _iterate(module, params, X, y, ctx)["model"]
    return Pipeline([("impute", _imputer(X)), ("forest", forest)])


def _glm(module: Any, params: dict[str, Any], X: Any, y: Any, ctx: Any) -> Any:
    from sklearn.pipeline import Pipeline

    imputer = _imputer(X)
    fitted = module.make_model(params, ctx).fit(imputer.transform(X), y)
    return Pipeline([("impute", imputer), *fitted.steps])


def _mlp(module: Any, params: dict[str, Any], X: Any, y: Any, ctx: Any) -> Any:
    import numpy as np
    from torch import nn

    state = _iterate(module, params, X, y, ctx)
    hidden, layers = int(params.get("hidden_size", 64)), int(params.get("n_layers", 2))
    dropout, width, mods = float(params.get("dropout", 0.0)), X.shape[1], []
    for _ in range(layers):  # the runner's architecture (model_mlp.fit_steps), to load its weights
        mods += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    net = nn.Sequential(*mods, nn.Linear(width, 1))
    net.load_state_dict(state["net"])
    median = np.nan_to_num(np.nanmedian(np.asarray(X, dtype=np.float64), axis=0), nan=0.0)
    xt = np.asarray(X.fillna(dict(zip(X.columns, median, strict=True))), dtype=np.float32)
    return _scored(net, median, xt.mean(axis=0), xt.std(axis=0) + 1e-6, ctx.task == "classification").eval()


def _scored(net: Any, median: Any, mean: Any, std: Any, probability: bool) -> Any:
    """The MLP as one module: missing values -> the training medians, standardise, the net,
    then the sigmoid for a classifier. MLflow saves it as an exported graph (``pt2``), so
    loading it needs torch only."""
    import torch
    from torch import nn

    class Scored(nn.Module):  # type: ignore[misc]  # torch is not followed (pyproject: mypy)
        def __init__(self) -> None:
            super().__init__()
            self.net, self.probability = net, probability
            for name, value in (("median", median), ("mean", mean), ("std", std)):
                self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

        def forward(self, x: Any) -> Any:
            fill, centre, scale = (getattr(self, n) for n in ("median", "mean", "std"))
            x = torch.where(torch.isnan(x), fill, x.float())
            out = self.net((x - centre) / scale)
            return torch.sigmoid(out) if self.probability else out

    return Scored()


BUILD = {"xgboost": _xgboost, "random_forest": _random_forest, "glm": _glm, "mlp": _mlp}


def _log(model_name: str, model: Any, X: Any, task: str, name: str, pip: list[str]) -> Any:
    import mlflow
    from mlflow.models import infer_signature

    if model_name == "xgboost":
        import xgboost as xgb

        signature = infer_signature(X, model.predict(xgb.DMatrix(X)))
        return mlflow.xgboost.log_model(model, name="model", signature=signature, input_example=X.head(5),
                                        pip_requirements=pip, registered_model_name=name)
    if model_name == "mlp":  # MLflow's default torch format (pt2) traces the module on a numpy example
        import torch

        example = X.head(5).to_numpy(dtype="float32")
        with torch.no_grad():
            out = model(torch.from_numpy(X.to_numpy(dtype="float32"))).numpy()
        signature = infer_signature(example, out[:5])  # pt2 wants tensor specs: float32 (rows, features)
        return mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=example,
                                        pip_requirements=pip, registered_model_name=name)
    import skops.io

    # skops (MLflow's default sklearn format) loads only the types it is told to trust: the
    # ones this pipeline, built here, is made of
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    method = "predict_proba" if task == "classification" else "predict"
    signature = infer_signature(X, getattr(model, method)(X))
    return mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=X.head(5),
                                    pip_requirements=pip, pyfunc_predict_fn=method, registered_model_name=name,
                                    skops_trusted_types=trusted)


def main() -> int:
    request = json.load(sys.stdin)
    sys.path.insert(0, request["runners"])
    import mlflow
    import trialkit

    model_name, params = request["model"], dict(request["params"])
    if request.get("best_step"):  # the trial's result was its best step: the final model stops there too
        key = "epochs" if model_name == "mlp" else "n_estimators"
        params[key] = int(request["best_step"])
    ds = trialkit.load_dataset(request["data"])
    ctx = trialkit.Context(ds.task, int(request["seed"]), int(request.get("threads") or os.cpu_count() or 1), "cpu")
    module = importlib.import_module(f"model_{model_name}")
    model = BUILD[model_name](module, params, ds.X, ds.y, ctx)
    # the libraries the model needs, at this host's versions (MLflow would otherwise start a
    # process to find them); xgboost's version from the module (the CPU wheel is "xgboost-cpu")
    pip = [f"{dist}=={importlib.import_module(mod).__version__}" for dist, mod in PIP[model_name]]
    with mlflow.start_run(run_id=request["run_id"]):
        info = _log(model_name, model, ds.X, ds.task, request["name"], pip)
    version_ = info.registered_model_version
    print(json.dumps({"name": request["name"], "version": str(version_) if version_ is not None else None,
                      "model_uri": info.model_uri, "params": params}))
    return 0


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # this folder's modules (progress, tracker, ...) are not top-level names
    sys.exit(main())
