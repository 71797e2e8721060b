"""The Kubernetes backend's handling of each Job and Pod state, against the in-process fake
API (tests/kubefake.py): the trials are real processes, their metric lines and exit codes real.
Eviction (DisruptionTarget) after a checkpoint is a preemption that the next attempt resumes
from; a Job deleted outside coord, a pod deleted outside coord, an image that will not pull,
and the API's 409/410/500 answers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from coordinator import protocol
from coordinator.backends.base import EndEvent, MetricEvent
from coordinator.backends.kubejob import RUN_LABEL
from coordinator.records import Allocation, Recipe
from coordinator.schedule.decide import TRANSIENT, Kind, end_kind
from tests import kubefake
from tests.backends.contract import collect, ends
from tests.kube.conftest import registry_text
from tests.kube.test_kube_contract import kube_backend

ALLOC = Allocation("kube", 0, None, "test")
# A trial that checkpoints its step on SIGTERM and exits 75, as the built-in runners do.
CHECKPOINTING = """\
import json, os, signal, sys, time
spec = json.load(open(os.environ['COORD_SPEC']))
ck = os.path.join(os.environ['COORD_CHECKPOINT_DIR'], 'step')
start = int(open(ck).read()) if os.path.exists(ck) else 0
print('[coord-metric] ' + json.dumps({'resumed_from': start}), flush=True)
state = {'step': start}
def term(*_):
    open(ck, 'w').write(str(state['step']))
    sys.exit(75)
signal.signal(signal.SIGTERM, term)
for step in range(start, int(os.environ.get('TRIAL_STEPS', '30'))):
    state['step'] = step
    print('[coord-metric] ' + json.dumps({'step': step, 'loss': float(step)}), flush=True)
    time.sleep(0.1)
print('[coord-metric] ' + json.dumps({'loss': (spec['params']['x'] - 3) ** 2}), flush=True)
"""


def recipe(tmp_path: Path, body: str = CHECKPOINTING, number: int = 0, timeout_s: float | None = None) -> Recipe:
    script = tmp_path / f"trial{number}.py"
    script.write_text(body)
    return Recipe(number, "s", {"x": 3}, 0, None, (sys.executable, str(script)), None, ("loss",), timeout_s=timeout_s)


def until_step(backend, step: int, timeout: float = 20) -> list:  # type: ignore[no-untyped-def]
    events: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += backend.poll(0.2)
        if any(isinstance(e, MetricEvent) and e.values.get("step", -1) >= step for e in events):
            return events
    raise AssertionError(f"no step {step} in {events}")


def the_pod(cluster: kubefake.Cluster) -> str:
    return kubefake.wait(lambda: next((p["metadata"]["name"] for p in cluster.pods()
                                       if p["status"].get("phase") == "Running"), None), what="a running pod")


def kind_of(end: EndEvent, metrics: dict[str, float]) -> Kind:
    return end_kind(end.outcome, ("loss",), metrics, end.outcome.stderr, prune_requested=False, pruned_mark=False,
                    migrating=False, segment=False, interrupted=False)


def test_an_evicted_pod_is_preempted_and_the_next_attempt_resumes_from_its_checkpoint(
        tmp_path: Path, cluster: kubefake.Cluster) -> None:
    backend = kube_backend(tmp_path)
    try:
        r = recipe(tmp_path)
        backend.launch(r, 1, ALLOC)
        first = until_step(backend, 3)
        cluster.evict(the_pod(cluster), "PreemptionByScheduler")
        first += collect(backend, 1, 30)
        (end,) = ends(first)
        assert end.outcome.preempted and end.outcome.exit_code == protocol.EXIT_REQUEUE, end.outcome
        assert kind_of(end, {}) == Kind.PREEMPTED  # spends no retry
        job = next(j for j in cluster.jobs() if j["metadata"]["name"].endswith("-0-a1"))
        (cond,) = job["status"]["conditions"]
        assert cond["reason"] == "PodFailurePolicy" and "DisruptionTarget" in cond["message"]
        backend.launch(r, 2, ALLOC)
        second = collect(backend, 1, 30)
        resumed = next(e.values["resumed_from"] for e in second if isinstance(e, MetricEvent) and "resumed_from" in e.values)
        assert resumed >= 3  # from the checkpoint on the volume, not from 0
        assert ends(second)[0].outcome.exit_code == 0 and kind_of(ends(second)[0], {"loss": 0.0}) == Kind.OK
    finally:
        backend.close()


def test_an_evicted_pod_that_left_no_checkpoint_is_lost_and_retried(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    body = "import time\nprint('[coord-metric] {\"step\": 5}', flush=True)\ntime.sleep(60)\n"
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path, body), 1, ALLOC)
        until_step(backend, 5)
        cluster.evict(the_pod(cluster))
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.lost and not end.outcome.preempted and kind_of(end, {}) == Kind.LOST
    finally:
        backend.close()


def test_a_job_deleted_outside_coord_ends_once_as_lost(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path), 1, ALLOC)
        until_step(backend, 1)
        name = cluster.jobs()[0]["metadata"]["name"]
        cluster.batch.delete_namespaced_job(name, "coord-test", propagation_policy="Background")  # kubectl delete job
        events = collect(backend, 1, 30)
        (end,) = ends(events)
        assert "deleted outside coord" in end.outcome.error and not end.outcome.preempted
        # SIGTERM'd with the Job, it checkpointed: exit 75, a requeue; transient: the loop retries it
        assert end.outcome.exit_code == protocol.EXIT_REQUEUE and kind_of(end, {}) in TRANSIENT
        assert not ends(backend.poll(1.0))
    finally:
        backend.close()


def test_a_pod_deleted_outside_coord_is_a_failure_with_its_exit_code(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    body = "import time\nprint('[coord-metric] {\"step\": 1}', flush=True)\ntime.sleep(60)\n"
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path, body), 1, ALLOC)
        until_step(backend, 1)
        cluster.core.delete_namespaced_pod(the_pod(cluster), "coord-test")  # kubectl delete pod
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.exit_code == 128 + 15 and kind_of(end, {}) == Kind.CRASHED  # SIGTERM'd: retried
        job = cluster.jobs()[0]
        assert job["status"]["conditions"][0]["reason"] == "BackoffLimitExceeded"  # backoffLimit 0: no 2nd pod
        assert len({p["metadata"]["name"] for p in cluster.pods()}) <= 1
    finally:
        backend.close()


def test_the_deadline_ends_it_as_timed_out(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path, timeout_s=1.0), 1, ALLOC)
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.timed_out and kind_of(end, {}) == Kind.TIMEOUT
        assert cluster.jobs()[0]["spec"]["activeDeadlineSeconds"] == 1
        assert cluster.jobs()[0]["status"]["conditions"][0]["reason"] == "DeadlineExceeded"
    finally:
        backend.close()


def test_an_image_that_will_not_pull_ends_the_attempt_as_permanent(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    cluster.bad_images["ghcr.io/lab/coord-trials:1"] = "ImagePullBackOff"
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path), 1, ALLOC)
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.exit_code == protocol.EXIT_PERMANENT and "ImagePullBackOff" in end.outcome.error
        assert kind_of(end, {}) == Kind.PERMANENT
        kubefake.wait(lambda: not cluster.jobs(), what="the Job deleted")
    finally:
        backend.close()


def test_api_errors_500_on_create_is_retried_and_410_relists(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    cluster.fail("create_namespaced_job", 500)
    body = CHECKPOINTING.replace("time.sleep(0.1)", "time.sleep(0.05)")
    backend = kube_backend(tmp_path)
    try:
        backend.launch(recipe(tmp_path, body), 1, ALLOC)
        until_step(backend, 2)
        lists = backend.watchers["kube"][0].lists
        cluster.compact()  # the watched version is gone: 410 on resume, then one relist
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.exit_code == 0
        assert cluster.calls["create_namespaced_job"] == 2 and len(cluster.jobs()) == 1
        assert backend.watchers["kube"][0].lists == lists + 1
    finally:
        backend.close()


def test_resume_reattaches_by_name_and_never_creates_a_second_job(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    """The coordinator died (detach) after the create, and in one case before it recorded the
    uid: the new backend attaches to the Job; where the record exists but no Job (it died
    before the create), it creates it once."""
    r = recipe(tmp_path, CHECKPOINTING.replace("'30'", "'12'"))
    first = kube_backend(tmp_path)
    first.launch(r, 1, ALLOC)
    until_step(first, 2)
    first.detach()
    record = tmp_path / "run/trials/0/attempt-1/kube.json"
    info = json.loads(record.read_text())
    assert info["uid"] == cluster.jobs()[0]["metadata"]["uid"]
    record.write_text(json.dumps({**info, "uid": None}))  # as if it died before recording the uid
    second = kube_backend(tmp_path)
    try:
        second.launch(r, 1, ALLOC)
        events = collect(second, 1, 30)
        assert ends(events)[0].outcome.exit_code == 0
        assert [e.values["step"] for e in events if isinstance(e, MetricEvent) and "step" in e.values] == list(range(12))
        assert cluster.calls["create_namespaced_job"] == 1
        # died after writing the record, before the create: created (once) on resume
        (tmp_path / "run/trials/1/attempt-1").mkdir(parents=True)
        (tmp_path / "run/trials/1/attempt-1/kube.json").write_text(json.dumps({**info, "uid": None}))
        second.launch(recipe(tmp_path, "print('[coord-metric] {\"loss\": 1}')\n", number=1), 1, ALLOC)
        assert ends(collect(second, 1, 30))[0].outcome.exit_code == 0
        assert cluster.calls["create_namespaced_job"] == 2
    finally:
        second.close()


def test_close_deletes_every_object_labelled_with_the_run(tmp_path: Path, cluster: kubefake.Cluster) -> None:
    (tmp_path / "other").mkdir()
    other = kube_backend(tmp_path / "other", run_id="other")  # another run's objects stay
    other.prepare("kube")
    backend = kube_backend(tmp_path)
    backend.launch(recipe(tmp_path, "print('[coord-metric] {\"loss\": 1}')\n"), 1, ALLOC)
    backend.launch(recipe(tmp_path, number=1), 1, ALLOC)
    collect(backend, 1, 30)
    backend.close()
    left = [(k, o["metadata"]["name"]) for k, objs in cluster.store.items() for o in objs.values()
            if (o["metadata"].get("labels") or {}).get(RUN_LABEL) == backend.run]
    kubefake.wait(lambda: not [o for o in cluster.pods() if o["metadata"]["labels"].get(RUN_LABEL) == backend.run],
                  what="the run's pods gone")
    assert not [x for x in left if x[0] != "pods"], left
    assert any(o["metadata"]["labels"].get(RUN_LABEL) == other.run for o in cluster.store["configmaps"].values())
    other.close()


def test_the_registry_file_is_the_fixture_registry(tmp_path: Path) -> None:
    assert "connection: kubernetes" in registry_text(tmp_path)


def test_a_pending_job_cancelled_ends_once_as_cancelled(tmp_path: Path, cluster: kubefake.Cluster,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import coordinator.backends.kube as kube

    monkeypatch.setattr(kube, "PULL_GRACE_S", 60.0)
    cluster.bad_images["ghcr.io/lab/coord-trials:1"] = "ErrImagePull"  # stays Pending meanwhile
    backend = kube_backend(tmp_path)
    try:
        h = backend.launch(recipe(tmp_path), 1, ALLOC)
        kubefake.wait(lambda: any(p["status"].get("containerStatuses") for p in cluster.pods()), what="a pending pod")
        backend.cancel(h)
        (end,) = ends(collect(backend, 1, 30))
        assert end.outcome.cancelled and kind_of(end, {}) == Kind.CANCELLED
        assert not cluster.jobs() and not ends(backend.poll(0.5))
    finally:
        backend.close()


def test_the_fake_s_controller_steps_a_job_through_its_states(tmp_path: Path) -> None:
    """The fake itself, stepped by hand (auto=False): Pending, Running, Succeeded, Complete."""
    c = kubefake.Cluster(tmp_path / "fake", {"coord-data": tmp_path / "vol"}, auto=False)
    try:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"a": "b"}},
               "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                   "restartPolicy": "Never", "containers": [{"name": "trial", "image": "i", "command": [
                       sys.executable, "-c", "print('hi')"]}]}}}}
        c.batch.create_namespaced_job("ns", job)
        try:
            c.batch.create_namespaced_job("ns", job)
            raise AssertionError("a second create must conflict")
        except kubefake.ApiException as exc:
            assert exc.status == 409
        c.step()
        (pod,) = c.pods()
        assert pod["status"]["phase"] == "Pending"
        c.step()
        assert c.pods()[0]["status"]["phase"] == "Running"
        kubefake.wait(lambda: (c.step(), c.pods()[0]["status"]["phase"] == "Succeeded")[1], what="Succeeded")
        c.step()
        assert c.jobs()[0]["status"]["conditions"][0]["type"] == "Complete"
        assert b"".join(c.core.read_namespaced_pod_log(pod["metadata"]["name"], "ns").stream()) == b"hi\n"
        listed = c.batch.list_namespaced_job("ns", label_selector="a=b")
        assert [j.metadata.name for j in listed.items] == ["j"] and int(listed.metadata.resource_version) > 100
    finally:
        c.close()
