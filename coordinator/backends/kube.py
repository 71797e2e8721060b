"""The Kubernetes backend (``connection: kubernetes``), EXPERIMENTAL: each trial attempt is one
Job. It has been tested here only against an in-process fake of the API (tests/kubefake.py)
and its manifests against the API's schemas, never against a real cluster (docs/kubernetes.md).

Per attempt the backend writes ``kube.json`` (the Job's name, then its uid) into the run
directory's attempt dir BEFORE creating anything, so that ``coord resume`` re-attaches to the
Job instead of creating it twice (a create that answers 409 Conflict is the same Job: it is
attached to). It then creates the attempt's ConfigMap (spec.json) and the Job
(``kubejob.py``). Two watchers per platform follow all of the run's Jobs and Pods by label
selector (``kubeapi.Watcher``: one list, then a watch); each running pod's log is followed
for metric lines into the attempt's local stdout. An attempt ends when its Job has finished
(or is gone) and its log has been read: exactly one EndEvent, classified by
``kubejob.ending``. ``cancel`` deletes the Job (foreground: the end comes when its pod is
gone); ``close`` then deletes every object labelled with the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from coordinator import protocol
from coordinator.backends import kubeapi
from coordinator.backends.agenthost import runners_hash
from coordinator.backends.base import Backend, EndEvent, Event, Handle, MetricEvent, drain
from coordinator.backends.kubeapi import Watcher, api_status, follow_log, host_error
from coordinator.backends.kubejob import (
    ATTEMPT_LABEL,
    CONTAINER,
    HOPELESS,
    PULL_ERRORS,
    RUNNERS_MOUNT,
    TRIAL_LABEL,
    PodView,
    cpu_threads,
    ending,
    job_end,
    job_manifest,
    job_name,
    pod_view,
    run_name,
    runners_configmap,
    selector,
    spec_configmap,
)
from coordinator.backends.plan import HostLayout, build
from coordinator.config.kubecfg import KubeOptions
from coordinator.config.registry import Platform
from coordinator.errors import HostError, RegistryError
from coordinator.records import Allocation, Outcome, Recipe

log = logging.getLogger(__name__)

PULL_GRACE_S = 120.0  # an image that cannot be pulled for this long ends the attempt
POD_WAIT_S = 10.0  # after a Job finished, how long its pod's final status may lag behind
CREATE_TRIES = 4  # a create that meets a 5xx or a broken connection is tried again (409 = done)


@dataclass
class Attempt:
    handle: Handle
    platform: str
    name: str  # the Job's (and its ConfigMap's)
    local_dir: Path
    parser: protocol.MetricParser
    out: IO[str]
    reason: str | None = None  # coord ended it: cancelled, pruned, timeout
    pull_failed: str | None = None
    pull_since: float | None = None
    finished_at: float | None = None  # when the Job's end (or its absence) was first seen
    following: str | None = None  # the pod whose log is being followed
    logs_done: bool = False
    lines: int = 0
    started: float = field(default_factory=time.monotonic)
    running_since: float | None = None
    ended: bool = False


class KubeBackend(Backend):
    def __init__(self, platforms: dict[str, Platform], runners_dir: Path, run_id: str, local_root: Path,
                 parser_factory: Any = protocol.MetricParser) -> None:
        self.platforms = platforms
        self.runners_dir, self.local_root = runners_dir, local_root
        self.run = run_name(run_id, str(Path(local_root).resolve()))
        self.parser_factory = parser_factory
        self.events: queue.Queue[Event] = queue.Queue()
        self.lock = threading.RLock()
        self.apis: dict[str, tuple[Any, Any]] = {}  # platform -> (BatchV1Api, CoreV1Api)
        self.watchers: dict[str, tuple[Watcher, Watcher]] = {}
        self.attempts: dict[str, Attempt] = {}  # by Job name
        self.jobs: dict[tuple[str, str], dict[str, Any] | None] = {}  # (platform, name) -> Job; None: gone
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}  # (platform, Job name) -> its pod, last seen
        self.closed = False
        self._stop = threading.Event()
        threading.Thread(target=self._tick, daemon=True, name="kube-tick").start()

    def _opts(self, platform: str) -> KubeOptions:
        opts = self.platforms[platform].kubernetes
        assert opts is not None
        return opts

    # -- preparing a platform -----------------------------------------------------------
    def prepare(self, platform: str) -> None:
        """The client loads, the namespace answers, the run's runners ConfigMap exists, and
        the platform's watchers follow the run's Jobs and Pods."""
        if platform in self.watchers:
            return
        opts = self._opts(platform)
        batch, core = kubeapi.connect(platform, opts)
        try:
            batch.list_namespaced_job(opts.namespace, limit=1)
        except Exception as exc:  # noqa: BLE001 - the API, the network or the credentials
            raise self._host_error(platform, exc, "list jobs") from None
        digest, files = runners_hash(self.runners_dir)
        body = runners_configmap(self.run, digest, files, opts.namespace)
        self._create(platform, lambda: core.create_namespaced_config_map(opts.namespace, body), "configmaps",
                     replace=lambda: core.replace_namespaced_config_map(body["metadata"]["name"], opts.namespace,
                                                                        body))
        self.apis[platform] = (batch, core)
        sel = selector(self.run)
        self.watchers[platform] = (
            Watcher(batch.list_namespaced_job, opts.namespace, sel, lambda t, o: self._job_seen(platform, t, o),
                    self._stop, f"kube-jobs-{platform}"),
            Watcher(core.list_namespaced_pod, opts.namespace, sel, lambda t, o: self._pod_seen(platform, t, o),
                    self._stop, f"kube-pods-{platform}"))

    def _host_error(self, platform: str, exc: BaseException, what: str) -> HostError:
        return host_error(platform, self._opts(platform), exc, what)

    def _create(self, platform: str, create: Any, what: str, replace: Any = None) -> Any:
        """Create an object; 409 (it exists: an earlier try got through) replaces it or is
        taken as done; 5xx and broken connections are tried again."""
        for i in range(CREATE_TRIES):
            try:
                return create()
            except Exception as exc:  # noqa: BLE001
                status = api_status(exc)
                if status == 409:
                    return replace() if replace is not None else None
                if status in (400, 422):
                    opts = self._opts(platform)
                    raise RegistryError(f"platform {platform!r}: the API server refused the {what}: "
                                        f"{getattr(exc, 'body', exc)}", file=opts.source, key=opts.key_path) from None
                if (status is not None and status < 500) or i == CREATE_TRIES - 1:
                    raise self._host_error(platform, exc, f"create {what}") from None
                time.sleep(0.5 * 2 ** i)
        return None

    # -- the contract -------------------------------------------------------------------
    def launch(self, recipe: Recipe, attempt: int, allocation: Allocation) -> Handle:
        platform = allocation.platform
        self.prepare(platform)
        opts, p = self._opts(platform), self.platforms[platform]
        mount = opts.mount_path
        layout = HostLayout(f"{mount}/runs/{self.run}", RUNNERS_MOUNT, p.python, mount, cpu_threads(opts.cpu_request))
        data = f"{mount}/data/{recipe.data['sha256']}.csv" if recipe.data else None
        plan = build(recipe, attempt, allocation, layout, data)
        handle = Handle(recipe.number, attempt, allocation)
        name = job_name(self.run, recipe.number, attempt)
        local_dir = self.local_root / "trials" / str(recipe.number) / f"attempt-{attempt}"
        local_dir.mkdir(parents=True, exist_ok=True)
        record = local_dir / "kube.json"
        known = json.loads(record.read_text()) if record.exists() else None
        manifest = job_manifest(plan, opts, self.run, name)
        (local_dir / "job.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        (local_dir / "plan.json").write_text(json.dumps(plan.record, indent=2, sort_keys=True), encoding="utf-8")
        # "w": a re-attach after a restart reads the pod's log again from its first line
        out = open(local_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        a = Attempt(handle, platform, name, local_dir, self.parser_factory(), out)
        with self.lock:
            self.attempts[name] = a
        batch, core = self.apis[platform]
        found = self._read_job(platform, name) if known else None
        if found is not None and known and not known.get("uid"):  # died before recording it
            record.write_text(json.dumps({**known, "uid": found["metadata"].get("uid")}))
        if found is None and known and known.get("uid"):
            with self.lock:  # created before, and gone while no coordinator watched it
                self.jobs[(platform, name)] = None
        elif found is None:
            info = {"job": name, "uid": None, "namespace": opts.namespace, "platform": platform}
            record.write_text(json.dumps(info))
            cm = spec_configmap(plan, self.run, name, opts.namespace)
            self._create(platform, lambda: core.create_namespaced_config_map(opts.namespace, cm), "configmaps",
                         replace=lambda: core.replace_namespaced_config_map(name, opts.namespace, cm))
            made = self._create(platform, lambda: batch.create_namespaced_job(opts.namespace, manifest), "jobs")
            uid = made.metadata.uid if made is not None else (self._read_job(platform, name) or {}).get(
                "metadata", {}).get("uid")
            record.write_text(json.dumps({**info, "uid": uid}))
        self._check(a)
        return handle

    def _read_job(self, platform: str, name: str) -> dict[str, Any] | None:
        batch, _ = self.apis[platform]
        try:
            return kubeapi.serialise(batch.read_namespaced_job(name, self._opts(platform).namespace))
        except Exception as exc:  # noqa: BLE001
            if api_status(exc) == 404:
                return None
            raise self._host_error(platform, exc, "read jobs") from None

    def poll(self, timeout: float) -> list[Event]:
        return drain(self.events, timeout)

    def cancel(self, handle: Handle, reason: str = "cancelled") -> None:
        with self.lock:
            a = next((x for x in self.attempts.values() if x.handle.key == handle.key), None)
        if a is None or a.ended:
            return
        a.reason = a.reason or reason
        self._delete_job(a)

    def _delete_job(self, a: Attempt) -> None:
        batch, _ = self.apis[a.platform]
        try:  # foreground: the Job goes when its pod has gone, so the slot is free when the end comes
            batch.delete_namespaced_job(a.name, self._opts(a.platform).namespace, propagation_policy="Foreground")
        except Exception as exc:  # noqa: BLE001
            if api_status(exc) == 404:
                with self.lock:
                    self.jobs[(a.platform, a.name)] = None
                self._check(a)
            else:
                log.warning("deleting Job %s failed: %s (the watch will show its end)", a.name, exc)

    def detach(self) -> None:
        """Let the Jobs run on (as after kill -9): ``coord resume`` re-attaches by name."""
        self.closed = True
        self._stop.set()

    def close(self) -> None:
        if self.closed:
            return
        with self.lock:
            live = [a for a in self.attempts.values() if not a.ended]
        for a in live:
            self.cancel(a.handle, "cancelled")
        deadline = time.monotonic() + 30
        while any(not a.ended for a in live) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.cleanup()
        self.closed = True
        self._stop.set()

    def cleanup(self) -> None:
        """Delete every object labelled with this run, on every platform it used."""
        for platform, (batch, core) in self.apis.items():
            ns, sel = self._opts(platform).namespace, selector(self.run)
            background = {"propagation_policy": "Background"}
            calls: tuple[tuple[Any, dict[str, str]], ...] = ((batch.delete_collection_namespaced_job, background),
                     (core.delete_collection_namespaced_pod, {}), (core.delete_collection_namespaced_config_map, {}))
            for fn, extra in calls:
                try:
                    fn(ns, label_selector=sel, **extra)
                except Exception as exc:  # noqa: BLE001 - cleanup is best effort; ttl removes finished Jobs
                    what = fn.__name__.replace("delete_collection_namespaced_", "")
                    log.warning("deleting the run's %s in %s failed: %s", what, ns, exc)

    # -- what the watchers see ----------------------------------------------------------
    def _job_seen(self, platform: str, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            self.jobs[(platform, name)] = None if kind == "DELETED" else obj
            a = self.attempts.get(name)
        if a is not None:
            self._check(a)

    def _pod_seen(self, platform: str, kind: str, obj: dict[str, Any]) -> None:
        labels = obj["metadata"].get("labels") or {}
        if TRIAL_LABEL not in labels:  # a deletion found by a relist: only the name is known
            with self.lock:
                match = [k for k, v in self.pods.items() if k[0] == platform and v["metadata"]["name"] ==
                         obj["metadata"]["name"]]
                for k in match:
                    self.pods[k] = {**self.pods[k], "deleted": True}
                found = [self.attempts[k[1]] for k in match if k[1] in self.attempts]
        else:
            name = job_name(self.run, int(labels[TRIAL_LABEL]), int(labels[ATTEMPT_LABEL]))
            with self.lock:
                self.pods[(platform, name)] = {**obj, "deleted": kind == "DELETED"}
                found = [self.attempts[name]] if name in self.attempts else []
        for a in found:
            self._check(a)

    def _tick(self) -> None:
        """Time-based decisions (an image that will not pull, a pod status that lags its Job)."""
        while not self._stop.wait(1.0):
            with self.lock:
                live = [a for a in self.attempts.values() if not a.ended]
            for a in live:
                self._check(a)

    def _check(self, a: Attempt) -> None:
        with self.lock:
            if a.ended:
                return
            key = (a.platform, a.name)
            job, seen = self.jobs.get(key, {}), key in self.jobs
            pod = self.pods.get(key)
            view = pod_view(pod) if pod is not None else None
            now = time.monotonic()
            if view is not None and view.running and a.following is None and not pod.get("deleted"):  # type: ignore[union-attr]
                a.following, a.running_since = view.name, a.running_since or now
                threading.Thread(target=self._logs, args=(a, view.name), daemon=True,
                                 name=f"kube-log-{a.name}").start()
            if view is not None and not view.running and view.reason in PULL_ERRORS and a.pull_failed is None:
                a.pull_since = a.pull_since or now
                if view.reason in HOPELESS or now - a.pull_since >= PULL_GRACE_S:
                    a.pull_failed = f"{view.reason}: {view.message}".rstrip(": ")
                    threading.Thread(target=self._delete_job, args=(a,), daemon=True).start()
            finished = seen and (job is None or job_end(job) is not None)
            if not finished:
                return
            a.finished_at = a.finished_at or now
            pod_final = view is None or view.terminated or bool(pod and pod.get("deleted"))
            logs_final = a.following is None or a.logs_done
            if not (pod_final and logs_final) and now - a.finished_at < POD_WAIT_S:
                return
            a.ended = True
        self._end(a, job, view)

    def _logs(self, a: Attempt, pod: str) -> None:
        _, core = self.apis[a.platform]
        ns = self._opts(a.platform).namespace

        def line(text: str) -> None:
            if a.ended:  # the end was given (the pod's status came first): nothing may follow it
                return
            a.out.write(text + "\n")
            a.out.flush()
            values = a.parser.parse(text)
            if values:
                self.events.put(MetricEvent(a.handle, values))

        for _ in range(20):  # a stream the API server broke while the pod still runs is followed again
            try:
                a.lines = follow_log(core, ns, pod, CONTAINER, a.lines, line)
            except Exception as exc:  # noqa: BLE001 - the pod went, or its log did
                log.debug("log of pod %s: %s", pod, exc)
            done = False
            for _ in range(30):  # the log ended: the pod's final status is usually a moment behind
                with self.lock:
                    p = self.pods.get((a.platform, a.name))
                    done = p is None or bool(p.get("deleted")) or pod_view(p).terminated or self._stop.is_set()
                if done:
                    break
                time.sleep(0.1)
            if done:
                break
        a.logs_done = True
        self._check(a)

    def _end(self, a: Attempt, job: dict[str, Any] | None, view: PodView | None) -> None:
        fields = ending(a.name, job, view, a.reason, a.pull_failed)
        stderr = fields.pop("stderr", "")
        (a.local_dir / "stderr").write_text(stderr, encoding="utf-8")
        ran = time.monotonic() - (a.running_since or a.started)
        out = Outcome(**fields, duration_s=ran, stderr=stderr[-4000:],
                      logs=(str(a.local_dir / "stdout"), str(a.local_dir / "stderr")))
        with contextlib.suppress(OSError, ValueError):
            a.out.close()
        if self.apis.get(a.platform):  # its spec ConfigMap is of no more use
            _, core = self.apis[a.platform]
            with contextlib.suppress(Exception):
                core.delete_namespaced_config_map(a.name, self._opts(a.platform).namespace)
        self.events.put(EndEvent(a.handle, out, time.monotonic()))
