"""Hardware registry: which platforms exist, what they can run, and the routing rules.

The YAML format follows the user's ``hardware_registry.yaml``: ``platforms`` keyed by
name and ``task_routing_rules`` keyed by model type, where ``route_to`` may now be an
ordered list of candidates (first = preferred, the rest = fallbacks). With no file, the
embedded default describes this machine, detected at run time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coordinator.config.kubecfg import KubeOptions, parse_kube
from coordinator.config.models import ALIASES, BUILTIN, CUSTOM_MODEL_TYPE
from coordinator.config.slurmcfg import SlurmOptions, parse_slurm
from coordinator.config.specs import Gpu, Specs, parse_gpus
from coordinator.config.windows import Conditions, Window, parse_available
from coordinator.config.yamlcfg import KeyPath, Section, Source, closest, load_yaml
from coordinator.errors import RegistryError
from coordinator.records import Needs

CONNECTIONS = ("local", "ssh", "kubernetes", "slurm")
RUNNABLE_CONNECTIONS = ("local", "ssh", "slurm", "kubernetes")
CONNECTION_ALIASES = {"k8s": "kubernetes"}  # the name earlier versions reserved
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
# The model types a routing rule can name and reach without --command (matched ignoring case).
MODEL_TYPES = (*dict.fromkeys(m.model_type for m in BUILTIN.values()), CUSTOM_MODEL_TYPE, "*")
# At least this similar (difflib's ratio) to a built-in type is a typo, refused: one letter
# wrong in a name of 7 or more letters (XGBoosst, RandomForst). Just above 6/7, so one letter
# added to a 3-letter name (GLMM, a mixed model) stays a custom type, with a warning.
TYPO_CUTOFF = 0.86


@dataclass(frozen=True)
class Platform:
    """One machine (or pool) trials can run on.

    ``max_concurrent_jobs`` is the number of slots; the first
    ``len(gpus) * max_trials_per_gpu`` slots are GPU slots, the rest CPU-only.
    """

    key: str
    name: str
    connection: str
    specs: Specs
    max_concurrent_jobs: int
    capabilities: tuple[str, ...] = ()
    best_for: tuple[str, ...] = ()
    max_trials_per_gpu: int = 1
    allow_shared_gpus: bool = False  # use GPUs where another user's compute processes run
    # prices (store/usage.py): the whole machine's per hour (shared by its slots), per GPU-hour,
    # and for owned machines the power drawn when busy with the price of a kWh
    cost_per_hour: float | None = None
    gpu_cost_per_hour: float | None = None
    watts: float | None = None
    tariff_per_kwh: float | None = None
    python: str = sys.executable
    work_dir: str = "~/.coord"
    host: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    jump: str | None = None  # another ssh platform to connect through (ProxyJump)
    slurm: SlurmOptions | None = None  # connection: slurm; a slot is one job that may be queued or running
    available: tuple[Window, ...] = ()  # hours of the week it may run trials (config/windows.py); () always
    when: Conditions | None = None  # available only while its host is idle / on AC power (config/windows.py)
    kubernetes: KubeOptions | None = None  # connection: kubernetes; a slot is one Job (pending or running)
    lease_dir: str | None = None  # slot leases shared with other users (None: <work_dir>/leases)
    lease_ttl_s: float = 15.0  # a dead coordinator's lease lapses after this long

    @property
    def job_gpus(self) -> int | None:
        """GPUs each job of a cluster platform asks for (None: not a cluster platform)."""
        if self.slurm is not None:
            return self.slurm.gpus
        if self.kubernetes is not None:
            return self.kubernetes.gpus
        return None

    @property
    def gpu_slots(self) -> int:
        if self.job_gpus is not None:  # every job gets its own GPUs from the cluster (gres, nvidia.com/gpu)
            return self.max_concurrent_jobs if self.job_gpus else 0
        return min(self.max_concurrent_jobs, len(self.specs.gpus) * self.max_trials_per_gpu)

    def slot_gpu(self, slot: int) -> Gpu | None:
        """The GPU a slot owns, or None for a CPU slot."""
        if self.slurm is not None:
            return Gpu(0, "SLURM GRES gpu") if self.slurm.gpus else None
        if self.kubernetes is not None:
            return Gpu(0, "nvidia.com/gpu") if self.kubernetes.gpus else None
        if slot < self.gpu_slots:
            return self.specs.gpus[slot % len(self.specs.gpus)]
        return None

    def threads_per_slot(self) -> int:
        return max(1, self.specs.cpu_cores // max(1, self.max_concurrent_jobs))


@dataclass(frozen=True)
class Candidate:
    platform: str
    reason: str


@dataclass(frozen=True)
class RoutingRule:
    model_type: str
    candidates: tuple[Candidate, ...]
    explicit: bool = True  # False: no rule names this model type; platforms in registry order are peers


@dataclass(frozen=True)
class Registry:
    platforms: dict[str, Platform]
    rules: tuple[RoutingRule, ...] = ()
    allow_local_fallback: bool = True
    source: str = "<embedded default>"
    known_hosts: str | None = None  # None: $COORD_KNOWN_HOSTS or ~/.ssh/known_hosts
    currency: str = ""  # the unit of every cost_per_hour and tariff (EUR, USD, ...): shown with costs
    # (model type, message) per rule naming a type no built-in model has: it routes only
    # --command searches run with that --model-type; the commands decide whom to tell
    warnings: tuple[tuple[str, str], ...] = ()

    def rule_for(self, model_type: str) -> RoutingRule:
        """The rule for a model type; with none, every platform in registry order."""
        for rule in self.rules:
            if rule.model_type.lower() == model_type.lower():
                return rule
        for rule in self.rules:
            if rule.model_type == "*":
                return rule
        return RoutingRule(model_type, tuple(Candidate(k, "no routing rule: registry order")
                                             for k in self.platforms), explicit=False)

    def candidates(self, model_type: str) -> list[Candidate]:
        """Where such trials may go, in order: the rule's candidates, then (when the registry
        allows it) every other local platform as a last fallback."""
        out = list(self.rule_for(model_type).candidates)
        if self.allow_local_fallback:
            named = {c.platform for c in out}
            out += [Candidate(k, "local fallback") for k, p in self.platforms.items()
                    if p.connection == "local" and k not in named]
        return out

    def infeasible(self, needs: Needs, runnable: Collection[str]) -> dict[str, str] | None:
        """Why no candidate could ever run such a trial (platform -> reason), or None if one can."""
        reasons: dict[str, str] = {}
        for c in self.candidates(needs.model_type):
            p = self.platforms[c.platform]
            why = never_fits(p, needs) or (None if p.connection in runnable else
                                           f"connection {p.connection!r} is not supported by this version")
            if why is None:
                return None
            reasons[c.platform] = why
        return reasons

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "allow_local_fallback": self.allow_local_fallback,
                "known_hosts": self.known_hosts, "currency": self.currency,
                "platforms": {k: asdict(p) for k, p in self.platforms.items()},
                "rules": [asdict(r) for r in self.rules]}


def never_fits(p: Platform, needs: Needs) -> str | None:
    """Why this platform can never run such a trial, or None if it could."""
    if needs.memory_gb > p.specs.memory_gb:
        return f"needs {needs.memory_gb:g} GB memory, platform has {p.specs.memory_gb:g} GB"
    if needs.gpu == "required" and p.gpu_slots == 0:
        return "needs a GPU, platform has none"
    if p.capabilities and needs.capabilities and not set(needs.capabilities) & set(p.capabilities):
        return (f"lacks the capability ({' or '.join(needs.capabilities)}); "
                f"it lists {', '.join(p.capabilities)}")
    return _procs_never_fit(p, needs) if needs.procs > 1 else None


def _procs_never_fit(p: Platform, needs: Needs) -> str | None:
    """A trial of ``procs`` processes takes one slot's cores per process (and a GPU of its
    own per process when it asks for GPUs); on SLURM, one job holding all of them."""
    n, o = needs.procs, p.slurm
    if o is not None:
        if n * o.cpus_per_task > p.specs.cpu_cores:
            return (f"needs {n * o.cpus_per_task} CPUs in one job (procs: {n} x cpus_per_task {o.cpus_per_task}), "
                    f"a node has {p.specs.cpu_cores} (specs.cpu_cores)")
        return None  # a GPU per process: never_fits's GPU check (a job without slurm.gpus has none)
    if needs.gpus_per_proc:
        gpus = len({g.index for s in range(p.gpu_slots) if (g := p.slot_gpu(s)) is not None})
        return f"needs {n} GPUs (procs: {n}, one per process), platform has {gpus}" if gpus < n else None
    if p.max_concurrent_jobs - p.gpu_slots < n:
        return (f"needs {n} CPU slots (procs: {n}), platform has {p.max_concurrent_jobs - p.gpu_slots} "
                f"(max_concurrent_jobs {p.max_concurrent_jobs}, {p.gpu_slots} with GPU)")
    return f"needs {n} cores (procs: {n}), platform has {p.specs.cpu_cores}" if n > p.specs.cpu_cores else None


KEYS = ("platforms", "task_routing_rules", "allow_local_fallback", "known_hosts", "currency")


def load_registry(path: str | Path) -> Registry:
    """Load and validate a registry file; every error names file, line and key path."""
    data, source = load_yaml(path, RegistryError)
    return parse_registry(data, source)


def parse_registry(data: Any, source: Source) -> Registry:
    root = Section(data, source)
    root.only(KEYS)  # a typo of 'platforms' is an unknown key, not a missing one
    plats = root.section("platforms")
    platforms: dict[str, Platform] = {}
    for key, _ in plats.items():
        if not _NAME.match(key):
            raise plats.fail(key, "platform names may hold letters, digits, '_', '.', '-' and may not "
                                  "start with '-'")
        platforms[key] = _parse_platform(key, plats.section(key))
    if not platforms:
        raise root.fail("platforms", "at least one platform is required")
    for key, p in platforms.items():
        if p.jump is not None:
            ssh_names = [k for k, q in platforms.items() if q.connection == "ssh" and k != key]
            if p.jump not in ssh_names or platforms[p.jump].jump is not None:
                raise source.fail(("platforms", key, "jump"), f"{p.jump!r} is not another ssh platform "
                                  "without a jump of its own", valid=ssh_names)
    rules: list[RoutingRule] = []
    raw_rules = root.raw("task_routing_rules", [])
    if not isinstance(raw_rules, list):
        raise root.fail("task_routing_rules", "expected a list of rules")
    seen: set[str] = set()
    warnings: list[tuple[str, str]] = []
    for i, raw in enumerate(raw_rules):
        rule = _parse_rule(Section(raw, source, ("task_routing_rules", i)), platforms)
        warning = _check_model_type(rule.model_type, source, ("task_routing_rules", i, "model_type"))
        if warning and not (isinstance(raw, dict) and raw.get("command_only")):  # declared: no warning
            warnings.append((rule.model_type, warning))
        if rule.model_type.lower() in seen:
            raise source.fail(("task_routing_rules", i, "model_type"),
                              f"a second rule for model type {rule.model_type!r}")
        seen.add(rule.model_type.lower())
        rules.append(rule)
    allow = root.get("allow_local_fallback", bool, True)
    known_hosts = root.get("known_hosts", str, None)
    currency = root.get("currency", str, "")
    if currency and not re.match(r"^[A-Za-z$€£¥]{1,8}$", currency):
        raise root.fail("currency", f"{currency!r} is not a currency (a short name or symbol: EUR, USD, $)")
    root.done()
    if known_hosts and not Path(known_hosts).expanduser().is_absolute():
        known_hosts = str(Path(source.file).parent / known_hosts)  # relative to the registry file
    return Registry(platforms, tuple(rules), allow, source.file, known_hosts, currency, tuple(warnings))


def _check_model_type(name: str, source: Source, path: KeyPath) -> str | None:
    """A near-miss of a built-in model type is a typo that would silently send its trials
    elsewhere: refused with a did-you-mean. Any other unknown name may be a --command
    search's own --model-type, so it is allowed; the returned warning says what it reaches."""
    known = {t.lower(): t for t in MODEL_TYPES}
    if name.lower() in known:
        return None
    typo = closest(name.lower(), known, TYPO_CUTOFF)
    if typo:
        raise source.fail(path, f"unknown model type {name!r}; did you mean {known[typo]!r}?",
                          valid=MODEL_TYPES)
    cli = ALIASES.get(name.lower(), name.lower())
    if cli in BUILTIN:  # the --model name, not its routing key
        hint = f"; --model {name.lower()} trials route by model type {BUILTIN[cli].model_type!r}"
    else:
        close = closest(name.lower(), known)
        hint = f"; did you mean {known[close]!r}?" if close else ""
    return str(source.fail(path, f"model type {name!r} is not a built-in one, so this rule applies only to "
                                 f"--command searches run with --model-type {name}{hint} (built-in: "
                                 f"{', '.join(MODEL_TYPES)})"))


def _parse_platform(key: str, sec: Section) -> Platform:
    connection = sec.get("connection", str, "local", choices=(*CONNECTIONS, *CONNECTION_ALIASES))
    connection = CONNECTION_ALIASES.get(connection, connection)
    specs_sec = sec.section("specs")
    gpus = parse_gpus(specs_sec)
    specs = Specs(cpu_cores=specs_sec.get("cpu_cores", int, minimum=1),
                  memory_gb=specs_sec.get("memory_gb", float, minimum=0.1), gpus=gpus)
    specs_sec.get("cuda_version", (str, float), None)  # informational, as in the user's registry
    specs_sec.done()
    host = sec.get("host", str, None)
    user = sec.get("user", str, None)
    for field_name, value in (("host", host), ("user", user)):
        if value is not None and not _HOST.match(value):
            raise sec.fail(field_name, f"{value!r} is not a valid {field_name} name (letters, digits, "
                                       "'_', '.', '-', ':'; no leading '-', no shell characters)")
    if connection == "ssh" and host is None:
        raise sec.fail("host", "an ssh platform needs a host")
    slurm = None
    if connection == "slurm":
        slurm_sec = sec.section("slurm") if sec.has("slurm") else Section({}, sec.source, (*sec.path, "slurm"))
        slurm = parse_slurm(slurm_sec, f"platforms.{key}.slurm")
    if slurm is None and sec.has("slurm"):
        raise sec.fail("slurm", "only a platform with connection: slurm has a slurm section")
    kube = parse_kube(sec.section("kubernetes"), f"platforms.{key}.kubernetes") \
        if connection == "kubernetes" and sec.has("kubernetes") else None
    if connection == "kubernetes" and kube is None:
        raise sec.missing("kubernetes")
    if kube is None and sec.has("kubernetes"):
        raise sec.fail("kubernetes", "only a platform with connection: kubernetes has a kubernetes section")
    platform = Platform(
        key=key,
        name=sec.get("name", str, key),
        connection=connection,
        specs=specs,
        max_concurrent_jobs=sec.get("max_concurrent_jobs", int, specs.cpu_cores, minimum=1),
        capabilities=tuple(sec.str_list("capabilities")),
        best_for=tuple(sec.str_list("best_for")),
        max_trials_per_gpu=sec.get("max_trials_per_gpu", int, 1, minimum=1),
        allow_shared_gpus=sec.get("allow_shared_gpus", bool, False),
        cost_per_hour=sec.get("cost_per_hour", float, None, minimum=0),
        gpu_cost_per_hour=sec.get("gpu_cost_per_hour", float, None, minimum=0),
        watts=_power(sec, "watts", "tariff_per_kwh"),
        tariff_per_kwh=_power(sec, "tariff_per_kwh", "watts"),
        python=sec.get("python", str, sys.executable if connection == "local" else "python3"),
        work_dir=sec.get("work_dir", str, "~/.coord"),
        host=host,
        port=sec.get("port", int, 22, minimum=1),
        user=user,
        identity_file=sec.get("identity_file", str, None),
        jump=sec.get("jump", str, None),
        slurm=slurm,
        available=(avail := parse_available(sec, connection))[0], when=avail[1],
        kubernetes=kube,
        lease_dir=sec.get("lease_dir", str, None),
        lease_ttl_s=sec.get("lease_ttl_s", float, 15.0, minimum=2.0),
    )
    sec.done()
    return platform


def _power(sec: Section, key: str, other: str) -> float | None:
    """``watts`` and ``tariff_per_kwh`` price electricity together: one without the other is a mistake."""
    value: float | None = sec.get(key, float, None, minimum=0)
    if value is not None and not sec.has(other):
        raise sec.fail(key, f"{key} prices electricity only with {other} beside it (e.g. watts: 450, "
                            "tariff_per_kwh: 0.30)")
    return value


def _parse_rule(sec: Section, platforms: dict[str, Platform]) -> RoutingRule:
    model_type = sec.get("model_type", str)
    default_reason = sec.get("reason", str, "routing rule")
    sec.get("command_only", bool, False)  # a --command search's own --model-type, on purpose
    route = sec.raw("route_to")
    if route is None:
        raise sec.missing("route_to")
    items = route if isinstance(route, list) else [route]
    candidates = []
    for j, item in enumerate(items):
        if isinstance(item, str):
            name, reason = item, default_reason if j == 0 else "fallback"
        elif isinstance(item, dict):
            csec = Section(item, sec.source, (*sec.path, "route_to", j))
            name, reason = csec.get("platform", str), csec.get("reason", str, "fallback")
            csec.done()
        else:
            raise sec.fail("route_to", "expected a platform name or a list of them")
        if name not in platforms:
            raise sec.source.fail((*sec.path, "route_to") + ((j,) if isinstance(route, list) else ()),
                                  f"unknown platform {name!r}", valid=platforms)
        candidates.append(Candidate(name, reason))
    sec.done()
    return RoutingRule(model_type, tuple(candidates))
