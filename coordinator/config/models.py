"""The built-in model catalogue: what the coordinator must know about each runner
without importing it (name, model type for routing, accepted parameters, needs)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.errors import ConfigError
from coordinator.records import Needs


@dataclass(frozen=True)
class ModelInfo:
    """A model coord can train itself.

    Attributes:
        name: the CLI name (``--model xgboost``).
        model_type: the key the registry's routing rules use (the user's vocabulary).
        runner: the module in ``runners/`` that trains it.
        params: every hyperparameter the runner accepts; a space naming others is refused.
        gpu: ``"preferred"`` (uses a GPU slot when there is one) or ``"none"``.
        capabilities: a platform listing capabilities must list one of these.
        memory_gb: memory one trial needs, for the router's capacity check.
        min_resource: the pruners' default smallest budget, in the runner's steps (boosting
            rounds, epochs); None for models that report once.
        step_param: the parameter that sets how many steps a trial trains (the steps it
            reports in); a finished trial's model is the one at its best step.
        step_unit: what one step is, in words (for table captions).
        distributed: the runner can train one trial as several processes (a space's
            ``procs: N``: torch DistributedDataParallel under torchrun).
    """

    name: str
    model_type: str
    runner: str
    params: frozenset[str]
    gpu: str = "none"
    capabilities: tuple[str, ...] = ()
    memory_gb: float = 0.5
    libraries: tuple[str, ...] = ("numpy", "pandas", "sklearn")  # import names the runner needs
    min_resource: int | None = None
    step_param: str | None = None
    step_unit: str = ""
    distributed: bool = False


CUSTOM_MODEL_TYPE = "Custom"

BUILTIN: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("xgboost", "XGBoost", "model_xgboost",
                  frozenset({"max_depth", "learning_rate", "n_estimators", "subsample", "colsample_bytree",
                             "min_child_weight", "reg_lambda", "reg_alpha", "gamma", "max_bin"}),
                  gpu="preferred", capabilities=("XGBoost", "XGBoost_CPU", "XGBoost_GPU"),
                  libraries=("numpy", "pandas", "sklearn", "xgboost"), min_resource=25,
                  step_param="n_estimators", step_unit="boosting rounds"),
        ModelInfo("random_forest", "RandomForest", "model_random_forest",
                  frozenset({"n_estimators", "max_depth", "min_samples_leaf", "max_features", "bootstrap",
                             "criterion"}),
                  capabilities=("Python_sklearn", "RandomForest", "Random_Forest_CPU"), min_resource=50,
                  step_param="n_estimators", step_unit="trees"),
        ModelInfo("glm", "GLM", "model_glm", frozenset({"C", "alpha", "l1_ratio", "penalty", "max_iter"}),
                  capabilities=("Python_sklearn", "GLM", "GLM_baseline")),
        ModelInfo("mlp", "NeuralNetwork", "model_mlp",
                  frozenset({"hidden_size", "n_layers", "lr", "weight_decay", "dropout", "epochs",
                             "batch_size"}),
                  gpu="preferred", capabilities=("PyTorch", "PyTorch_GPU", "PyTorch_CPU", "Neural_Networks"),
                  memory_gb=1.0, libraries=("numpy", "pandas", "sklearn", "torch"), min_resource=2,
                  step_param="epochs", step_unit="epochs", distributed=True),
    )
}

ALIASES = {"xgb": "xgboost", "rf": "random_forest", "randomforest": "random_forest",
           "random-forest": "random_forest", "nn": "mlp", "neuralnetwork": "mlp", "torch": "mlp",
           "logistic": "glm"}


def needs_of(model: ModelInfo, procs: int = 1, gpus_per_proc: int = 0) -> Needs:
    """What one trial of ``model`` needs from the registry: its memory once per process;
    several processes ask for a GPU each (``gpus_per_proc: 1``) or run on CPU slots."""
    gpu = model.gpu if procs == 1 else ("required" if gpus_per_proc else "none")
    return Needs(model.model_type, model.memory_gb * procs, gpu, model.capabilities, procs, gpus_per_proc)


def get_model(name: str) -> ModelInfo:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BUILTIN:
        raise ConfigError(f"unknown model type {name!r}; for your own script use --command",
                          key="--model", valid=BUILTIN)
    return BUILTIN[key]
