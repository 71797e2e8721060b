"""The trial protocol: how any training script talks to coord (stdlib only).

In: a JSON spec file whose path is in ``COORD_SPEC`` plus a few environment variables.
Out: ``[coord-metric] {"step": 3, "val_auc": 0.91}`` lines on stdout; for arbitrary
scripts also ``name: value`` / ``name=value`` lines (Katib style) for the named metrics.
Exit codes: 0 done, 75 requeue (checkpointed), permanent codes are not retried.

The parser never raises into the coordinator: bad lines are counted and skipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

METRIC_PREFIX = "[coord-metric]"
AGENT_PROTOCOL = 1  # the agent's request/stream format (docs/architecture.md); runners/remote.py says the same
# keys of a metric line that are control markers, not metrics: a built-in runner's last
# report when it stopped on a prune request, or ended a PBT segment. The loop takes them
# out at once: they decide how the attempt ended and never reach a result or trials.csv.
CONTROL_KEYS = frozenset({"pruned_step", "segment_step"})
END_PREFIX = "[coord-end]"  # the agent: one attempt is over (never printed by user scripts)
HEARTBEAT_PREFIX = "[coord-hb]"  # the agent: still alive, each second
LEASE_PREFIX = "[coord-lease]"  # the agent: what this coordinator may use of the host now (slot leases)
REPLY_PREFIX = "[coord-reply]"  # the agent's answer to a request that waits for one (a lease claim)
# A built-in runner wrote a checkpoint: ``[coord-ckpt] {"file": ..., "step": ..., "sha256": ...}``.
# The file (runners/checkpoint.py) is ``COORDCK1 <sha256 of payload> <params key>\n<payload>``.
CKPT_PREFIX = "[coord-ckpt]"
CKPT_MAGIC = b"COORDCK1"

ENV_SPEC = "COORD_SPEC"
ENV_TRIAL_NUMBER = "COORD_TRIAL_NUMBER"
ENV_ATTEMPT = "COORD_ATTEMPT"
ENV_CHECKPOINT_DIR = "COORD_CHECKPOINT_DIR"
ENV_CUDA = "CUDA_VISIBLE_DEVICES"

EXIT_OK = 0
EXIT_REQUEUE = 75  # EX_TEMPFAIL: "requeue me, I checkpointed"
# Failures that will fail again the same way: bad parameters, missing data or library,
# command not found. sysexits' EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CONFIG; argparse's 2;
# the shell's 126/127.
PERMANENT_EXIT_CODES = frozenset({2, 64, 65, 66, 78, 126, 127})
EXIT_PERMANENT = 78

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
# A name starts where no name character precedes it: without that look-behind, a long run of
# letters is re-scanned from every position (quadratic: 60 MB of output took minutes).
DEFAULT_PATTERN = rf"(?<![\w.\-/])(?P<name>[A-Za-z_][\w.\-/]*)\s*[:=]\s*(?P<value>{_NUMBER})(?![\w.])"
MAX_LINE = 1 << 20


@dataclass
class MetricParser:
    """Turns stdout lines into metric dicts.

    Args:
        wanted: metric names accepted from ``name: value`` lines; empty disables that
            style (built-in runners only speak ``[coord-metric]``).
        pattern: regex with ``name`` and ``value`` groups for the free-text style.
    """

    wanted: frozenset[str] = frozenset()
    pattern: str = DEFAULT_PATTERN
    bad_lines: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern, re.IGNORECASE)

    def parse(self, line: str | bytes) -> dict[str, float] | None:
        """Metrics on this line (``step`` included when given), or None. Never raises."""
        try:
            return self._parse(line)
        except Exception:  # the contract: a bad line is counted, never fatal
            self.bad_lines += 1
            return None

    def _parse(self, line: str | bytes) -> dict[str, float] | None:
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        if len(line) > MAX_LINE:
            self.bad_lines += 1
            return None
        line = _ANSI.sub("", line).strip().replace("\r", "")
        if not line:
            return None
        if line.startswith(METRIC_PREFIX):
            payload = json.loads(line[len(METRIC_PREFIX):])
            if not isinstance(payload, dict):
                self.bad_lines += 1
                return None
            out = {str(k): _to_float(v) for k, v in payload.items()}
            clean = {k: v for k, v in out.items() if v is not None}
            if len(clean) != len(out):
                self.bad_lines += 1
            return clean or None
        if not self.wanted or (":" not in line and "=" not in line):
            return None
        found: dict[str, float] = {}
        for m in self._regex.finditer(line):
            name = m.group("name")
            if name in self.wanted or name == "step":
                value = _to_float(m.group("value"))
                if value is not None:
                    found[name] = value
        return found or None


def names_seen(text: str, limit: int = 20) -> list[str]:
    """Metric names in ``text`` (any name, in either style), in order of first appearance:
    what a trial printed instead of the metric it was asked for."""
    out: list[str] = []
    regex = re.compile(DEFAULT_PATTERN, re.IGNORECASE)
    for line in text.splitlines()[-2000:]:
        line = _ANSI.sub("", line)
        if line.startswith(METRIC_PREFIX):
            try:
                payload = json.loads(line[len(METRIC_PREFIX):])
            except ValueError:
                continue
            names = [str(k) for k in payload] if isinstance(payload, dict) else []
        else:
            names = [m.group("name") for m in regex.finditer(line)]
        out.extend(n for n in names if n not in out and n != "step")
        if len(out) >= limit:
            break
    return out[:limit]


def _to_float(v: object) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def checkpoint_ok(data: bytes) -> bool:
    """True when a checkpoint file's bytes are whole (its checksum matches)."""
    import hashlib

    header, sep, payload = data.partition(b"\n")
    parts = header.split(b" ")
    return bool(sep) and len(parts) == 3 and parts[0] == CKPT_MAGIC and \
        hashlib.sha256(payload).hexdigest().encode() == parts[1]


def format_metric(values: dict[str, float]) -> str:
    """The line a trial prints (non-finite values become strings JSON can carry)."""
    return METRIC_PREFIX + " " + json.dumps(
        {k: (v if isinstance(v, (int, float)) and math.isfinite(v) else str(v)) for k, v in values.items()})


def split_control(values: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A report's metrics and its control markers (``CONTROL_KEYS``), apart."""
    if not CONTROL_KEYS.intersection(values):
        return values, {}
    return ({k: v for k, v in values.items() if k not in CONTROL_KEYS},
            {k: v for k, v in values.items() if k in CONTROL_KEYS})
