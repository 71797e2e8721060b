"""A run directory, read for MLflow: the timeline from events.jsonl, and per trial what its
child run holds (parameters, step and final metrics, tags, status, artefacts). Pure reads:
``mlflowlog.Syncer`` writes it to MLflow."""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator import __version__
from coordinator.protocol import MetricParser
from coordinator.store.files import tail
from coordinator.store.rundir import RunStore, TrialRecord

KEY, STUDY, TRIAL, KIND, SYNCED = "coord.run_id", "coord.study", "coord.trial", "coord.kind", "coord.synced"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "CANCELLED": "KILLED", "FAILED": "FAILED"}
NOT_METRICS = frozenset({"step", "pruned_step", "segment_step"})
TAIL_LINES = 200
_BAD_NAME = re.compile(r"[^\w\-. /]")
_URL_PASSWORD = re.compile(r"(://[^/@:\s\"]*):[^/@\s\"]*@")


def clean_name(name: str) -> str:
    """A metric, parameter or tag name MLflow accepts."""
    return _BAD_NAME.sub("_", str(name))[:250] or "_"


def redacted_config(config: dict[str, Any]) -> str:
    """run.json as text, any password in a URL (e.g. an Optuna --storage URL) removed."""
    return _URL_PASSWORD.sub(r"\1:***@", json.dumps(config, indent=2, sort_keys=True, default=str))


@dataclass
class Timeline:
    """When things happened, from events.jsonl (milliseconds since the epoch)."""

    started: int | None = None
    ended: int | None = None
    interrupted: bool = False
    launched: dict[tuple[int, int], int] = field(default_factory=dict)
    finished: dict[tuple[int, int], int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # the data as the search started on it (path, sha256)

    def add(self, e: dict[str, Any]) -> None:
        t, kind = int(float(e.get("t", 0)) * 1000), e.get("event")
        if kind == "search_start" and self.started is None:
            self.started, self.data = t, dict(e.get("data") or {})
        elif kind == "search_end":
            self.ended, self.interrupted = t, bool(e.get("interrupted"))
        elif kind in ("launched", "reattached") and (e["number"], e["attempt"]) not in self.launched:
            self.launched[(e["number"], e["attempt"])] = t
        elif kind == "ended":
            self.finished[(e["number"], e["attempt"])] = t

    @property
    def done(self) -> bool:
        """The search ended (and was not interrupted): its best trial is final."""
        return self.ended is not None and not self.interrupted


def _reports(text: str, parser: MetricParser) -> list[dict[str, float]]:
    out = []
    for line in text.splitlines():
        values = parser.parse(line)
        if values and "step" in values:
            out.append(values)
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@dataclass
class TrialLog:
    """What one trial's child run holds."""

    name: str
    params: dict[str, str]
    metrics: list[tuple[str, float, int, int]]  # key, value, timestamp (ms), step
    tags: dict[str, str]
    status: str
    start_ms: int
    end_ms: int
    artefacts: dict[str, str]


class RunView:
    """The run directory, read for MLflow: configuration, timeline, trials."""

    def __init__(self, store: RunStore, key: str, extra_tags: dict[str, str] | None = None,
                 host_tags: dict[str, dict[str, str]] | None = None,
                 study_extra: dict[str, str] | None = None) -> None:
        self.store, self.key, self.config = store, key, store.config
        self.timeline, self._offset = Timeline(), 0
        self.extra_tags = extra_tags or {}  # on every run: git state, coord's host
        self.host_tags = host_tags or {}  # platform -> host.* tags, for trials whose result has none
        self.study_extra = study_extra or {}  # on the searches' runs: coord's own host
        wanted = frozenset(self.config.get("metrics") or ()) if self.config.get("command") else frozenset()
        self.parser = MetricParser(wanted=wanted)
        self.refresh()

    def refresh(self) -> None:
        """Read the events appended since the last call (a long run's log is not re-read each second)."""
        try:
            with open(self.store.root / "events.jsonl", "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # a line a crash cut short
                continue
            if isinstance(event, dict):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self.timeline.add(event)

    @property
    def studies(self) -> list[dict[str, Any]]:
        return list(self.config.get("studies") or [])

    def study_params(self, study: dict[str, Any]) -> dict[str, str]:
        opts = self.config.get("options") or {}
        keep = ("sampler", "pruner", "seed", "parallel", "timeout", "trial_timeout", "max_retries", "cv", "folds",
                "placement", "pbt", "min_resource", "max_resource", "reduction_factor")
        params = {k: opts[k] for k in keep if opts.get(k) not in (None, [], ())}
        params.update({"trials": self.config.get("trials"), "metrics": ",".join(self.config.get("metrics") or []),
                       "directions": ",".join(self.config.get("directions") or []), "study": study.get("name"),
                       "model": study.get("model") or "command", "model_type": study.get("model_type")})
        return {clean_name(k): str(v)[:6000] for k, v in params.items() if v is not None}

    def data_sha256(self, spec: str = "") -> str:
        """The data file's sha256: the trial's own (its spec), else the search's."""
        try:
            own = (json.loads(spec).get("data") or {}).get("sha256") if spec else None
        except ValueError:
            own = None
        return str(own or self.timeline.data.get("sha256") or (self.config.get("data") or {}).get("sha256") or "")

    def study_tags(self, study: dict[str, Any]) -> dict[str, str]:
        sha = self.data_sha256()
        return {KEY: self.key, STUDY: str(study.get("name")), KIND: "study", "coord.version": __version__,
                "coord.run_dir": str(self.store.root), "coord.run_name": str(self.config.get("name")),
                **({"coord.data_sha256": sha} if sha else {}), **self.study_extra,
                **self.extra_tags}

    def gpu_model(self, platform: str | None, index: Any) -> str:
        if platform is None or index is None:
            return ""
        specs = (((self.config.get("registry") or {}).get("platforms") or {}).get(platform) or {}).get("specs") or {}
        gpus = specs.get("gpus") or []
        return str(gpus[int(index)].get("model", "")) if 0 <= int(index) < len(gpus) else ""

    def trial_log(self, rec: TrialRecord) -> TrialLog:
        result: dict[str, Any] = rec.result.to_json() if rec.result else {}
        info = rec.info.to_json()
        number, tl = rec.number, self.timeline
        attempts = list(result.get("attempts") or [])
        last = attempts[-1] if attempts else {}
        numbers = [int(a.get("attempt", i + 1)) for i, a in enumerate(attempts)] or [int(result.get("attempt", 1))]
        end_ms = max([tl.finished.get((number, k), 0) for k in numbers] + [0]) or self._mtime(number)
        start_ms = min([tl.launched[(number, k)] for k in numbers if (number, k) in tl.launched] or
                       [end_ms - int(1000 * float(result.get("total_s") or 0))])
        metrics, artefacts, last_point = [], {}, {}
        for k in numbers:
            adir = self.store.attempt_dir(number, k)
            base = tl.launched.get((number, k), start_ms)
            for i, values in enumerate(_reports(_read(adir / "stdout"), self.parser)):
                step = int(values["step"])
                for name, value in values.items():
                    if name not in NOT_METRICS:
                        metrics.append((clean_name(name), value, base + i, step))
                        last_point[clean_name(name)] = (step, value)
            artefacts[f"attempt-{k}.log"] = "".join(f"== {name} (last {TAIL_LINES} lines) ==\n"
                                                    f"{tail(adir / name, TAIL_LINES)}\n"
                                                    for name in ("stdout", "stderr"))
        spec = _read(self.store.attempt_dir(number, numbers[-1]) / "spec.json")
        if spec:
            artefacts["spec.json"] = spec
        for name, value in (result.get("metrics") or {}).items():
            key = clean_name(name)
            if name in NOT_METRICS or not isinstance(value, (int, float)):
                continue
            step, previous = last_point.get(key, (0, None))
            if previous is None or not (previous == value or (math.isnan(previous) and math.isnan(value))):
                metrics.append((key, float(value), end_ms, step))  # the final value, after the last report
        params = {clean_name(k): json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                  for k, v in (result.get("params") or info.get("params") or {}).items()}
        status = str(result.get("status", "FAILED"))
        sha = self.data_sha256(spec)
        tags = {KEY: self.key, STUDY: str(result.get("study") or info.get("study")), TRIAL: str(number),
                KIND: "trial", "coord.status": status, "coord.end": str(result.get("kind", "")),
                "coord.platform": str(result.get("platform", last.get("platform", ""))),
                "coord.host": str(result.get("host", "")), "coord.slot": str(last.get("slot", "")),
                "coord.gpu": "" if last.get("gpu") is None else str(last.get("gpu")),
                "coord.gpu_model": self.gpu_model(last.get("platform"), last.get("gpu")),
                "coord.attempts": str(len(attempts) or result.get("attempt", 1)),
                "coord.seed": str(result.get("seed", info.get("seed", ""))),
                "coord.model": str(result.get("model") or info.get("model") or "command"),
                "coord.optuna_number": str(result.get("optuna_number", "")),
                "coord.duration_s": str(result.get("duration_s", "")), "coord.version": __version__,
                **({"coord.data_sha256": sha} if sha else {}),
                **({"coord.error": str(result["error"])[-4000:]} if result.get("error") else {}),
                **(_provenance(result) or self.host_tags.get(str(result.get("platform")), {})), **self.extra_tags}
        return TrialLog(f"trial-{number}", params, metrics, tags, STATUS.get(status, "FAILED"), start_ms,
                        max(end_ms, start_ms), artefacts)

    def _mtime(self, number: int) -> int:
        try:
            return int((self.store.trial_dir(number) / "result.json").stat().st_mtime * 1000)
        except OSError:
            return 0


def _provenance(result: dict[str, Any]) -> dict[str, str]:
    """Whatever the result records about its host (``provenance``: Python and library
    versions, hardware), flattened to ``host.*`` tags."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif value is not None and len(out) < 100:
            out[clean_name(prefix)] = str(value)[:5000]

    prov = result.get("provenance") or {}
    host = dict(prov.get("host") or {})  # the hardware, Python and libraries of the host it ran on
    walk("host", {k: v for k, v in host.items() if k != "libraries"})
    walk("host", host.get("libraries") or {})  # host.xgboost, as for a run from before provenance
    walk("coord.seeds", prov.get("seeds") or {})
    if (prov.get("gpu") or {}).get("model"):
        out["host.gpu_model"] = str(prov["gpu"]["model"])
    return out
