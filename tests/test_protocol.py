import math

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.protocol import MetricParser, format_metric


def test_coord_metric_lines() -> None:
    p = MetricParser()
    assert p.parse('[coord-metric] {"step": 3, "val_auc": 0.91}') == {"step": 3.0, "val_auc": 0.91}
    assert p.parse(format_metric({"auc": 0.5, "loss": float("nan")}))["auc"] == 0.5
    assert math.isnan(p.parse(format_metric({"loss": float("nan")}))["loss"])
    assert p.parse("plain output") is None
    assert p.parse("\x1b[32m[coord-metric] {\"a\": 1}\x1b[0m\r\n") == {"a": 1.0}


def test_katib_style_lines_only_for_wanted_metrics() -> None:
    p = MetricParser(wanted=frozenset({"val_loss", "accuracy"}))
    assert p.parse("epoch 3: val_loss=0.25, accuracy: 0.9, lr=0.1") == {"val_loss": 0.25, "accuracy": 0.9}
    assert p.parse("val_loss: 1e-3") == {"val_loss": 0.001}
    assert p.parse("val_loss: abc") is None
    assert MetricParser().parse("val_loss: 0.3") is None  # built-in runners speak only [coord-metric]


def test_bad_lines_are_counted_not_raised() -> None:
    p = MetricParser()
    for bad in ['[coord-metric] {"a": ', "[coord-metric] [1, 2]", b"[coord-metric] {\"a\": \xff}",
                '[coord-metric] {"a": "x"}', "[coord-metric] " + "9" * (2 << 20)]:
        assert p.parse(bad) is None
    assert p.bad_lines == 5


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.text().map(lambda t: "[coord-metric] " + t),
                 st.dictionaries(st.text(), st.one_of(st.floats(), st.integers(), st.text(), st.none()))
                 .map(lambda d: "[coord-metric] " + __import__("json").dumps(d))))
def test_parser_never_raises(line: str | bytes) -> None:
    p = MetricParser(wanted=frozenset({"loss", "auc"}))
    out = p.parse(line)
    assert out is None or all(isinstance(v, float) for v in out.values())


def test_runner_side_constants_match_the_coordinators() -> None:
    """runners/ repeats the protocol's markers and exit codes on purpose (they run on hosts
    with nothing but Python and never import coordinator); this keeps the two in step."""
    import importlib
    import sys

    from coordinator import protocol, resources

    sys.path.insert(0, str(resources.folder("runners")))
    try:
        trialkit, remote, checkpoint = (importlib.import_module(m) for m in ("trialkit", "remote", "checkpoint"))
    finally:
        sys.path.remove(str(resources.folder("runners")))
    assert trialkit.METRIC_PREFIX == protocol.METRIC_PREFIX
    assert (trialkit.EXIT_OK, trialkit.EXIT_REQUEUE) == (protocol.EXIT_OK, protocol.EXIT_REQUEUE)
    assert {trialkit.EXIT_PERMANENT, trialkit.EXIT_DATAERR} <= protocol.PERMANENT_EXIT_CODES
    assert trialkit.EXIT_FAIL not in protocol.PERMANENT_EXIT_CODES
    assert (remote.END, remote.HEARTBEAT) == (protocol.END_PREFIX, protocol.HEARTBEAT_PREFIX)
    assert remote.PROTOCOL == protocol.AGENT_PROTOCOL
    assert (checkpoint.PREFIX, checkpoint.MAGIC) == (protocol.CKPT_PREFIX, protocol.CKPT_MAGIC)
    assert protocol.checkpoint_ok(b"COORDCK1 " + __import__("hashlib").sha256(b"x").hexdigest().encode() + b" k\nx")
    kit = (resources.folder("runners") / "trialkit.py").read_text()
    assert all(f'"{key}"' in kit for key in protocol.CONTROL_KEYS)  # the runner's control markers
    from coordinator.schedule import pbt  # PBT re-keys checkpoints: its key must be the runner's
    params = {"lr": 0.01, "hidden_size": 16, "name": "x"}
    assert pbt.params_key(params) == checkpoint.params_key(params)
    assert checkpoint.verify(pbt.rekey_checkpoint(b"COORDCK1 " + __import__("hashlib").sha256(b"x").hexdigest().encode()
                                                  + b" k\nx", params), checkpoint.params_key(params)) == b"x"
