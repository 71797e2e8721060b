"""Which backend runs the platforms of each ``connection:`` in the registry.

``FACTORIES`` maps a connection to the function that builds its backend over the run's
platforms of that connection; ``runnable()`` is what this version can run. The agent
backend serves both ``local`` and ``ssh`` (one agent per host either way). A SLURM or
Kubernetes backend registers its connection here; a run whose platforms need several
backends gets one backend per factory behind a fleet that routes by platform
(``fleet.py``): local and SSH hosts through the agent, a SLURM cluster through its own.

``config/registry.py`` cannot import this layer, so it keeps the list of runnable
connections for its feasibility checks; ``tests/test_architecture.py`` checks that the two
agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator import protocol
from coordinator.backends.agent import AgentBackend
from coordinator.backends.base import Backend
from coordinator.backends.fleet import FleetBackend
from coordinator.backends.kube import KubeBackend
from coordinator.backends.leasing import Sharing
from coordinator.backends.slurm import SlurmBackend
from coordinator.config.registry import Platform


@dataclass(frozen=True)
class BackendContext:
    """What every backend of a run is built with."""

    known_hosts: Path
    runners_dir: Path
    run_id: str
    local_root: Path  # the run directory
    parser_factory: Any = protocol.MetricParser
    cwd: str = field(default_factory=os.getcwd)  # where local trials start
    sharing: Sharing | None = None  # slot leases on local and SSH hosts (None: this run alone)


Factory = Callable[[dict[str, Platform], BackendContext], Backend]


def _agent(platforms: dict[str, Platform], ctx: BackendContext) -> Backend:
    return AgentBackend(platforms, ctx.known_hosts, ctx.runners_dir, run_id=ctx.run_id, local_root=ctx.local_root,
                        parser_factory=ctx.parser_factory, cwd=ctx.cwd, sharing=ctx.sharing)


def _slurm(platforms: dict[str, Platform], ctx: BackendContext) -> Backend:
    return SlurmBackend(platforms, ctx.runners_dir, ctx.run_id, ctx.local_root, parser_factory=ctx.parser_factory,
                        known_hosts=ctx.known_hosts)


def _kube(platforms: dict[str, Platform], ctx: BackendContext) -> Backend:
    return KubeBackend(platforms, ctx.runners_dir, ctx.run_id, ctx.local_root, parser_factory=ctx.parser_factory)


FACTORIES: dict[str, Factory] = {"local": _agent, "ssh": _agent, "slurm": _slurm, "kubernetes": _kube}


def runnable() -> tuple[str, ...]:
    return tuple(FACTORIES)


def build(platforms: dict[str, Platform], ctx: BackendContext) -> Backend:
    """The run's backend over every platform whose connection this version can run."""
    groups: dict[Factory, dict[str, Platform]] = {}
    for key, p in platforms.items():
        factory = FACTORIES.get(p.connection)
        if factory is not None:
            groups.setdefault(factory, {})[key] = p
    if len(groups) > 1:
        members: dict[str, Backend] = {}
        for factory, mine in groups.items():
            backend = factory(mine, ctx)
            members.update(dict.fromkeys(mine, backend))
        return FleetBackend(members)
    ((factory, mine),) = groups.items() if groups else ((_agent, {}),)
    return factory(mine, ctx)
