"""``coord validate``: a registry or search space checked as ``coord search`` checks it, with
the same parsers and the same model check, so a file that validates is one search accepts."""

from __future__ import annotations

from coordinator.config import registry as registry_cfg
from coordinator.config import space as space_cfg
from coordinator.config.models import BUILTIN, get_model
from coordinator.config.yamlcfg import closest, load_yaml
from coordinator.errors import ConfigError, RegistryError, SpaceError
from coordinator.reporting.fmt import plural


def validate_file(path: str, kind: str, model: str | None = None) -> str:
    """What ``path`` defines, or the error coord search would raise on it: a space with a model
    (its ``model:``, or ``model``) gets that model's check."""
    data, source = load_yaml(path)
    if kind == "auto":  # by the top-level keys, or the nearest to them (a typo such as 'parms')
        keys = [str(k) for k in data] if isinstance(data, dict) else []
        near = [m for k in keys if (m := closest(k, ("platforms", "params"))) is not None]
        kind = "registry" if "platforms" in keys or (near and near[0] == "platforms") else \
            "space" if "params" in keys or near else ""
        if not kind:
            raise ConfigError("neither a registry (no 'platforms') nor a search space (no 'params')", file=path)
    if kind == "registry":
        source.error = RegistryError
        reg = registry_cfg.parse_registry(data, source)
        return "\n".join([f"{path}: valid registry: {plural(len(reg.platforms), 'platform')} "
                          f"({', '.join(reg.platforms)}), {plural(len(reg.rules), 'routing rule')}",
                          *(f"warning: {m}" for _, m in reg.warnings)])
    source.error = SpaceError
    space = space_cfg.parse_space(data, source)
    head = f"{path}: valid search space: {plural(len(space.params), 'parameter')} ({', '.join(space.params)})"
    if model or space.model:
        info = get_model(model or space.model or "")
        space_cfg.check_space_matches(space, info.params, info.name, info.distributed)  # coord search's check
        procs = f", {space.procs} processes per trial" if space.procs > 1 else ""
        return f"{head} for {info.name}{procs}"
    names = [*space.params, *space.fixed]
    fits = sorted(m.name for m in BUILTIN.values() if all(n in m.params for n in names))
    if fits:
        return f"{head}; fits {', '.join(fits)} (--model NAME checks one)"
    return f"{head}; for --command only: no built-in model has all of them (--model NAME says which it lacks)"
