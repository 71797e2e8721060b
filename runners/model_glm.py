"""GLM baseline: regularised logistic regression (classification) or elastic net
(regression) on standardised features."""

from typing import Any

import trialkit
from sklearn.linear_model import ElasticNet, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

NEEDS_IMPUTE = True
_L1_RATIO = {"l2": 0.0, "l1": 1.0}


def make_model(params: dict[str, Any], ctx: trialkit.Context) -> Any:
    """The unfitted pipeline these parameters describe (also refit for the model registry)."""
    p = dict(params)
    penalty = p.pop("penalty", None)
    l1_ratio = float(p.pop("l1_ratio", _L1_RATIO.get(penalty, 0.5) if penalty else 0.0))
    if penalty is not None and penalty not in ("l1", "l2", "elasticnet"):
        raise trialkit.ParamError(f"penalty must be l1, l2 or elasticnet, got {penalty!r}")
    if penalty in _L1_RATIO:
        l1_ratio = _L1_RATIO[penalty]
    max_iter = int(p.pop("max_iter", 500))
    if ctx.task == "classification":
        C = float(p.pop("C", 1.0))
        p.pop("alpha", None)
        if C <= 0:
            raise trialkit.ParamError("C must be > 0")
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga",
                                                                  max_iter=max_iter, random_state=ctx.seed))
    alpha = float(p.pop("alpha", 1.0 / float(p.pop("C", 1.0))))
    return make_pipeline(StandardScaler(), ElasticNet(alpha=alpha, l1_ratio=l1_ratio, max_iter=max_iter,
                                                      random_state=ctx.seed))


def fit_predict(params: dict[str, Any], X: Any, y: Any, X_valid: Any, ctx: trialkit.Context) -> Any:
    model = make_model(params, ctx).fit(X, y)
    return model.predict_proba(X_valid)[:, 1] if ctx.task == "classification" else model.predict(X_valid)
