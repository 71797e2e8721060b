"""XGBoost (hist). On a GPU slot the coordinator sets device=cuda; otherwise CPU."""

from typing import Any

import trialkit
import xgboost as xgb

DEFAULTS = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1}


REPORT_EVERY = 25  # boosting rounds between reports: the same steps for every trial, so rungs compare


def fit_steps(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context,
              resume: Any = None) -> Any:
    """Boost round by round; every ``REPORT_EVERY`` rounds (and at the last) yield (rounds so
    far, validation predictions, state), where ``state()`` is the model so far for a
    checkpoint. ``resume`` (a state) continues from there; its step is yielded again first."""
    p = {**DEFAULTS, **params}
    rounds = int(p.pop("n_estimators"))
    for key in ("max_depth", "max_bin"):
        if key in p:
            p[key] = int(p[key])
    if rounds < 1 or p["max_depth"] < 0 or p["learning_rate"] <= 0:
        raise trialkit.ParamError("n_estimators >= 1, max_depth >= 0 and learning_rate > 0 are required")
    objective = "binary:logistic" if ctx.task == "classification" else "reg:squarederror"
    booster_params = {"tree_method": "hist", "device": ctx.device, "nthread": ctx.threads, "seed": ctx.seed,
                      "objective": objective, **p}
    try:
        dtrain, dvalid = xgb.DMatrix(X, label=y), xgb.DMatrix(X_valid)
        start = 0
        if resume is not None:
            booster = xgb.Booster(booster_params, [dtrain], model_file=bytearray(resume["model"]))
            start = int(resume["rounds"])
            yield start, booster.predict(dvalid, iteration_range=(0, start)), lambda: resume
        else:
            booster = xgb.Booster(booster_params, [dtrain])
        for i in range(start, rounds):
            booster.update(dtrain, i)
            if (i + 1) % REPORT_EVERY == 0 or i + 1 == rounds:
                done = i + 1
                yield done, booster.predict(dvalid, iteration_range=(0, done)), \
                    lambda done=done: {"model": bytes(booster.save_raw("ubj")), "rounds": done}
    except xgb.core.XGBoostError as exc:
        if "Invalid" in str(exc) or "invalid" in str(exc) or "Unknown" in str(exc):
            raise trialkit.ParamError(str(exc).splitlines()[0]) from None
        raise


def fit_predict(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context) -> Any:
    p = {**DEFAULTS, **params}
    for key in ("n_estimators", "max_depth", "max_bin"):
        if key in p:
            p[key] = int(p[key])
    if p["n_estimators"] < 1 or p["max_depth"] < 0 or p["learning_rate"] <= 0:
        raise trialkit.ParamError("n_estimators >= 1, max_depth >= 0 and learning_rate > 0 are required")
    common = dict(tree_method="hist", device=ctx.device, n_jobs=ctx.threads, random_state=ctx.seed, **p)
    try:
        if ctx.task == "classification":
            model = xgb.XGBClassifier(objective="binary:logistic", eval_metric="logloss", **common)
            model.fit(X, y)
            return model.predict_proba(X_valid)[:, 1]
        model = xgb.XGBRegressor(objective="reg:squarederror", **common)
        model.fit(X, y)
        return model.predict(X_valid)
    except xgb.core.XGBoostError as exc:
        if "Invalid" in str(exc) or "invalid" in str(exc):
            raise trialkit.ParamError(str(exc).splitlines()[0]) from None
        raise
