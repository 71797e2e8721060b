"""Random forest (scikit-learn), CPU-parallel within the slot's thread budget. Grown in
chunks of trees (``warm_start``), so the tree count is the fidelity the pruners see and a
checkpoint holds the forest so far; scikit-learn draws each new tree's seed as if the
forest had been grown in one go, so chunks change nothing in the result."""

from typing import Any

import trialkit
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

NEEDS_IMPUTE = True
CHUNK = 50  # trees between reports


def fit_steps(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context,
              resume: Any = None) -> Any:
    """Yield (trees so far, validation predictions, state) every ``CHUNK`` trees and at the end."""
    p = {"n_estimators": 200, **params}
    total = int(p.pop("n_estimators"))
    if p.get("max_depth") is not None:
        p["max_depth"] = int(p["max_depth"])
    if "min_samples_leaf" in p:
        p["min_samples_leaf"] = int(p["min_samples_leaf"])
    if total < 1:
        raise trialkit.ParamError("n_estimators >= 1 is required")
    cls = RandomForestClassifier if ctx.task == "classification" else RandomForestRegressor
    if "criterion" in p and ctx.task == "regression" and p["criterion"] in ("gini", "entropy", "log_loss"):
        raise trialkit.ParamError(f"criterion {p['criterion']!r} is for classification")

    def predict(model: Any) -> Any:
        return model.predict_proba(X_valid)[:, 1] if ctx.task == "classification" else model.predict(X_valid)

    if resume is not None:
        model = resume["model"]
        model.set_params(n_jobs=ctx.threads)
        yield len(model.estimators_), predict(model), lambda: resume
    else:
        try:
            model = cls(n_jobs=ctx.threads, random_state=ctx.seed, warm_start=True, n_estimators=0, **p)
        except (TypeError, ValueError) as exc:
            raise trialkit.ParamError(str(exc)) from None
    grown = len(getattr(model, "estimators_", []))
    while grown < total:
        grown = min(total, grown + CHUNK)
        model.set_params(n_estimators=grown)
        try:
            model.fit(X, y)
        except ValueError as exc:
            raise trialkit.ParamError(str(exc)) from None
        yield grown, predict(model), lambda: {"model": model}
