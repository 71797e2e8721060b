"""Random forest (scikit-learn), CPU-parallel within the slot's thread budget."""

from typing import Any

import trialkit
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

NEEDS_IMPUTE = True


def fit_predict(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context) -> Any:
    p = {"n_estimators": 200, **params}
    p["n_estimators"] = int(p["n_estimators"])
    if p.get("max_depth") is not None:
        p["max_depth"] = int(p["max_depth"])
    if "min_samples_leaf" in p:
        p["min_samples_leaf"] = int(p["min_samples_leaf"])
    cls = RandomForestClassifier if ctx.task == "classification" else RandomForestRegressor
    if "criterion" in p and ctx.task == "regression" and p["criterion"] in ("gini", "entropy", "log_loss"):
        raise trialkit.ParamError(f"criterion {p['criterion']!r} is for classification")
    try:
        model = cls(n_jobs=ctx.threads, random_state=ctx.seed, **p)
        model.fit(X, y)
    except ValueError as exc:
        raise trialkit.ParamError(str(exc)) from None
    if ctx.task == "classification":
        return model.predict_proba(X_valid)[:, 1]
    return model.predict(X_valid)
