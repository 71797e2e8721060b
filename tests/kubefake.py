"""An in-process fake of the Kubernetes API: the subset of BatchV1Api and CoreV1Api that the
Kubernetes backend calls, holding real ``kubernetes.client`` model objects (V1Job, V1Pod,
V1ConfigMap), with a Job and Pod controller, and the trial run FOR REAL as a local subprocess
from the pod's command, environment and volumes. No API server can run on these machines;
this is what the backend is tested against (docs/kubernetes.md says so).

What it does like Kubernetes: resourceVersions, list-then-watch with the wire format of
watch events (JSON lines the official client's ``watch.Watch`` parses), 410 Gone for a
compacted version, 404/409 on reads and creates, label selectors (equality), a Job's single
pod (backoffLimit 0) and its podFailurePolicy rules (onPodConditions, onExitCodes; FailJob,
Ignore, Count), activeDeadlineSeconds (DeadlineExceeded), ttlSecondsAfterFinished, foreground
and background deletion, evictions with the DisruptionTarget condition, SIGTERM to the
container's process then SIGKILL after terminationGracePeriodSeconds, the termination message
(FallbackToLogsOnError), image pull errors, and pod logs followed while the container runs.

What it does not: scheduling, nodes, resources, RBAC, admission. Volumes: a
persistentVolumeClaim maps to the directory given for its claim, a hostPath to itself, a
configMap to a directory of its keys; a path under a mountPath in the command, the environment,
the working directory or a configMap's text is rewritten to the local directory (a process
here has no mount namespace), which is the one liberty it takes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import string
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, V1ConfigMapList, V1JobList, V1ListMeta, V1PodList
from kubernetes.client.exceptions import ApiException

_API = ApiClient()
KINDS = {"jobs": "V1Job", "pods": "V1Pod", "configmaps": "V1ConfigMap"}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_model(data: dict[str, Any], kind: str) -> Any:
    return _API._ApiClient__deserialize(data, KINDS[kind])  # type: ignore[attr-defined]


def to_dict(obj: Any) -> dict[str, Any]:
    return _API.sanitize_for_serialization(obj)  # type: ignore[no-any-return]


def matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if (labels or {}).get(key) != value:
            return False
    return True


class Stream:
    """A response with ``stream()``, as urllib3's (the client reads watch events and logs so)."""

    status = 200

    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Any:
        yield from self.chunks

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Cluster:
    """One namespace-aware object store with a controller (``step``), which runs on a thread
    every 50 ms unless ``auto=False`` (then the test calls ``step()``)."""

    def __init__(self, root: Path, claims: dict[str, Path] | None = None, auto: bool = True) -> None:
        self.root = root
        self.claims = claims or {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 100
        self.store: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KINDS}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, object)
        self.compacted = 0  # a watch from a version below this gets 410 Gone
        self.failures: list[tuple[str, int]] = []  # (method, status): the next such call fails
        self.calls: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kill_at: dict[str, float] = {}
        self.bad_images: dict[str, str] = {}  # image -> waiting reason
        self.batch, self.core = Batch(self), Core(self)
        self.stopped = threading.Event()
        if auto:
            threading.Thread(target=self._loop, daemon=True).start()

    def connect(self, platform: str, opts: Any) -> tuple[Any, Any]:
        return self.batch, self.core

    def close(self) -> None:
        self.stopped.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    def _loop(self) -> None:
        while not self.stopped.wait(0.05):
            self.step()

    # -- the store ------------------------------------------------------------------------
    def call(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        for i, (m, status) in enumerate(self.failures):
            if m == method:
                del self.failures[i]
                raise ApiException(status=status, reason={409: "Conflict", 410: "Gone"}.get(status, "injected"))

    def fail(self, method: str, status: int, times: int = 1) -> None:
        self.failures += [(method, status)] * times

    def put(self, kind: str, obj: dict[str, Any], event: str = "MODIFIED") -> dict[str, Any]:
        with self.lock:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if event == "DELETED":
                self.store[kind].pop(key, None)
            else:
                self.store[kind][key] = obj
            self.history.append((self.rv, kind, event, json.loads(json.dumps(obj))))
            self.changed.notify_all()
            return obj

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.store[kind].get((ns, name))
        if obj is None:
            raise ApiException(status=404, reason="Not Found")
        return obj

    def create(self, kind: str, ns: str, body: dict[str, Any]) -> Any:
        body = json.loads(json.dumps(to_dict(body)))
        with self.lock:
            if (ns, body["metadata"]["name"]) in self.store[kind]:
                raise ApiException(status=409, reason="AlreadyExists")
            meta = body["metadata"]
            meta.update(namespace=ns, uid=f"uid-{self.rv + 1}", creationTimestamp=now_iso())
            body.setdefault("status", {})
            return to_model(self.put(kind, body, "ADDED"), kind)

    def listing(self, kind: str, ns: str, selector: str | None, watch: bool, version: str | None,
                timeout: float | None) -> Any:
        if watch:
            return Stream(self._watch(kind, ns, selector, int(version or 0), timeout or 30))
        with self.lock:
            items = [to_model(o, kind) for (n, _), o in self.store[kind].items()
                     if n == ns and matches(o["metadata"].get("labels"), selector)]
            cls = {"jobs": V1JobList, "pods": V1PodList, "configmaps": V1ConfigMapList}[kind]
            return cls(items=items, metadata=V1ListMeta(resource_version=str(self.rv)))

    def _watch(self, kind: str, ns: str, selector: str | None, since: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        if since < self.compacted:
            yield json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                          "message": "too old resource version"}}).encode() + b"\n"
            return
        cursor = since
        while time.monotonic() < deadline and not self.stopped.is_set():
            with self.lock:
                if self.compacted > since:  # the server ended this watch
                    return
                batch = [(rv, t, o) for rv, k, t, o in self.history if rv > cursor and k == kind
                         and o["metadata"]["namespace"] == ns and matches(o["metadata"].get("labels"), selector)]
                cursor = self.rv
                if not batch:
                    self.changed.wait(0.2)
            for _, t, o in batch:
                yield json.dumps({"type": t, "object": o}).encode() + b"\n"

    def compact(self) -> None:
        """Forget the history: open watches end and resuming them gets 410 Gone."""
        with self.lock:
            self.compacted = self.rv
            self.history.clear()
            self.changed.notify_all()

    # -- deletion -------------------------------------------------------------------------
    def delete_job(self, ns: str, name: str, policy: str | None) -> None:
        with self.lock:
            job = self.get("jobs", ns, name)
            pods = self.pods_of(job)
            if policy == "Foreground":
                job["metadata"]["deletionTimestamp"] = now_iso()
                self.put("jobs", job)
            elif policy != "Orphan":
                self.put("jobs", job, "DELETED")
            if policy != "Orphan":
                for pod in pods:
                    self.terminate(pod)

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"]["uid"]
        return [p for p in self.store["pods"].values() if p["metadata"]["labels"].get("controller-uid") == uid]

    def terminate(self, pod: dict[str, Any], condition: dict[str, Any] | None = None) -> None:
        """Delete a pod as the kubelet does: SIGTERM to the container's process, SIGKILL after
        the grace period, then the pod goes."""
        with self.lock:
            meta, status = pod["metadata"], pod["status"]
            if condition is not None:
                status.setdefault("conditions", []).append({"type": "DisruptionTarget", "status": "True",
                                                            "lastTransitionTime": now_iso(), **condition})
            meta.setdefault("deletionTimestamp", now_iso())
            proc = self.procs.get(meta["name"])
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                self.kill_at[meta["name"]] = time.monotonic() + pod["spec"].get("terminationGracePeriodSeconds", 30)
            self.put("pods", pod)

    def evict(self, pod_name: str, reason: str = "EvictionByEvictionAPI") -> None:
        """The Eviction API (a spot node's drain), or preemption with reason PreemptionByScheduler."""
        with self.lock:
            pod = next(p for p in self.store["pods"].values() if p["metadata"]["name"] == pod_name)
            self.terminate(pod, {"reason": reason, "message": f"fake: {reason}"})

    def pods(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.store["pods"].values())

    def jobs(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.store["jobs"].values())

    # -- the controllers --------------------------------------------------------------------
    def step(self) -> None:
        with self.lock:
            pods = list(self.store["pods"].values())  # a pod made in this step starts in the next
            for job in list(self.store["jobs"].values()):
                self._job(job)
            for pod in pods:
                if (pod["metadata"]["namespace"], pod["metadata"]["name"]) in self.store["pods"]:
                    self._pod(pod)

    def _job(self, job: dict[str, Any]) -> None:
        meta, spec, status = job["metadata"], job["spec"], job.setdefault("status", {})
        pods = self.pods_of(job)
        if meta.get("deletionTimestamp"):
            if not pods:
                self.put("jobs", job, "DELETED")
            return
        ended = any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", []))
        if ended:
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None and time.time() - status["_ended"] >= ttl:
                self.delete_job(meta["namespace"], meta["name"], "Background")
            return
        if "startTime" not in status:
            status.update(startTime=now_iso(), _start=time.time(), active=0, failed=0)
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.time() - status["_start"] > deadline:
            self._finish(job, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            for pod in pods:
                self.terminate(pod)
            return
        live = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
        for pod in pods:
            if pod["status"].get("phase") in ("Succeeded", "Failed") and not pod["status"].get("_counted"):
                pod["status"]["_counted"] = True
                if pod["status"]["phase"] == "Succeeded":
                    self._finish(job, "Complete", "CompletionsReached", "Reached expected number of succeeded pods")
                    return
                action, message = self._policy(job, pod)
                if action == "FailJob":
                    self._finish(job, "Failed", "PodFailurePolicy", message)
                    return
                if action != "Ignore":
                    status["failed"] += 1
                    if status["failed"] > spec.get("backoffLimit", 6):
                        self._finish(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                        return
        if not live and not any(p["status"].get("phase") == "Succeeded" for p in pods):
            self._new_pod(job)
        status["active"] = len(live)

    def _policy(self, job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
        conditions = {c["type"] for c in pod["status"].get("conditions", []) if c.get("status") == "True"}
        term = next((cs["state"].get("terminated") for cs in pod["status"].get("containerStatuses", [])
                     if cs["state"].get("terminated")), None)
        for i, rule in enumerate((job["spec"].get("podFailurePolicy") or {}).get("rules", [])):
            for cond in rule.get("onPodConditions", []):
                if cond["type"] in conditions:
                    return rule["action"], (f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']} has "
                                            f"condition {cond['type']} matching {rule['action']} rule at index {i}")
            codes = rule.get("onExitCodes")
            if codes and term is not None and (term["exitCode"] in codes["values"]) == (codes["operator"] == "In"):
                return rule["action"], (f"Container {codes.get('containerName')} for pod "
                                        f"{pod['metadata']['namespace']}/{pod['metadata']['name']} failed with exit "
                                        f"code {term['exitCode']} matching {rule['action']} rule at index {i}")
        return "Count", ""

    def _finish(self, job: dict[str, Any], kind: str, reason: str, message: str) -> None:
        status = job["status"]
        status["_ended"] = time.time()
        status["conditions"] = [{"type": kind, "status": "True", "reason": reason, "message": message,
                                 "lastTransitionTime": now_iso()}]
        status["completionTime" if kind == "Complete" else "active"] = now_iso() if kind == "Complete" else 0
        if kind == "Complete":
            status["succeeded"] = 1
        self.put("jobs", job)

    def _new_pod(self, job: dict[str, Any]) -> None:
        template = json.loads(json.dumps(job["spec"]["template"]))
        name = f"{job['metadata']['name']}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
        labels = {**template["metadata"].get("labels", {}), "controller-uid": job["metadata"]["uid"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"], "job-name": job["metadata"]["name"]}
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
               "metadata": {"name": name, "namespace": job["metadata"]["namespace"], "labels": labels,
                            "uid": f"uid-{self.rv + 1}", "creationTimestamp": now_iso()},
               "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
        self.put("pods", pod, "ADDED")

    def _pod(self, pod: dict[str, Any]) -> None:
        meta, status, c = pod["metadata"], pod["status"], pod["spec"]["containers"][0]
        name = meta["name"]
        proc = self.procs.get(name)
        if status["phase"] == "Pending" and proc is None:
            if meta.get("deletionTimestamp"):  # it fails (the Job counts it), then goes
                status["phase"] = "Failed"
                self.put("pods", pod)
                return
            bad = self.bad_images.get(c["image"])
            if bad:
                if not status.get("containerStatuses"):
                    status["containerStatuses"] = [{"name": c["name"], "image": c["image"], "ready": False,
                                                    "restartCount": 0, "imageID": "", "state": {"waiting": {
                                                        "reason": bad, "message": f"fake: cannot pull {c['image']}"}}}]
                    self.put("pods", pod)
                return
            self._start(pod)
            return
        if proc is None or status["phase"] != "Running":
            if meta.get("deletionTimestamp") and status["phase"] in ("Succeeded", "Failed"):
                self.put("pods", pod, "DELETED")
            return
        code = proc.poll()
        if code is None:
            if name in self.kill_at and time.monotonic() > self.kill_at[name]:
                os.killpg(proc.pid, signal.SIGKILL)
            return
        code = 128 - code if code < 0 else code  # killed by a signal: the runtime reports 128 + n
        work = self.root / "pods" / name
        message = (work / "termination-log").read_text(errors="replace") if (work / "termination-log").exists() else ""
        if not message and code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join((work / "log").read_text(errors="replace").splitlines()[-80:])[-2048:]
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        status["containerStatuses"][0]["state"] = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message,
            "startedAt": status["startTime"], "finishedAt": now_iso()}}
        self.put("pods", pod)

    def _start(self, pod: dict[str, Any]) -> None:
        """Run the container here: volumes as local directories, paths under them rewritten."""
        meta, spec = pod["metadata"], pod["spec"]
        c = spec["containers"][0]
        work = self.root / "pods" / meta["name"]
        work.mkdir(parents=True, exist_ok=True)
        mounts: dict[str, str] = {}
        for vol in spec.get("volumes", []):
            mount = next((m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] == vol["name"]), None)
            if mount is None:
                continue
            if "persistentVolumeClaim" in vol:
                local = self.claims[vol["persistentVolumeClaim"]["claimName"]]
            elif "hostPath" in vol:
                local = Path(vol["hostPath"]["path"])
            else:
                cm = self.store["configmaps"].get((meta["namespace"], vol["configMap"]["name"]))
                if cm is None:
                    return  # the kubelet waits for it (FailedMount): the pod stays Pending
                local = work / vol["name"]
                local.mkdir(exist_ok=True)
                for key, text in (cm.get("data") or {}).items():
                    (local / key).write_text(text)
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount] = str(local)
        mounts[c.get("terminationMessagePath", "/dev/termination-log")] = str(work / "termination-log")

        def rewrite(text: str) -> str:
            for mount in sorted(mounts, key=len, reverse=True):
                text = text.replace(mount, mounts[mount])
            return text

        for vol in spec.get("volumes", []):
            if "configMap" in vol and (work / vol["name"]).is_dir():
                for f in (work / vol["name"]).iterdir():
                    f.write_text(rewrite(f.read_text()))
        env = {"PATH": os.environ["PATH"], "HOME": str(work),
               **{e["name"]: rewrite(e["value"]) for e in c.get("env", [])}}
        argv = [rewrite(a) for a in [*c.get("command", []), *c.get("args", [])]]
        cwd = rewrite(c.get("workingDir", str(work)))
        Path(cwd).mkdir(parents=True, exist_ok=True)
        log = open(work / "log", "wb")  # noqa: SIM115 - the container's log, kept by the "kubelet"
        self.procs[meta["name"]] = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
        pod["status"].update(phase="Running", startTime=now_iso(), podIP="10.0.0.1")
        pod["status"]["containerStatuses"] = [{"name": c["name"], "image": c["image"], "ready": True,
                                               "restartCount": 0, "imageID": "fake",
                                               "state": {"running": {"startedAt": now_iso()}}}]
        self.put("pods", pod)

    def log_stream(self, ns: str, name: str) -> Stream:
        with self.lock:
            pod = self.get("pods", ns, name)
            if name not in self.procs:
                raise ApiException(status=400, reason=f"container {CONTAINER} in pod {name} is waiting to start")
        proc, path = self.procs[name], self.root / "pods" / name / "log"

        def chunks() -> Any:
            with open(path, "rb") as fh:
                while True:
                    data = fh.read(65536)
                    if data:
                        yield data
                        continue
                    if proc.poll() is not None or self.stopped.is_set() or \
                            (ns, name) not in self.store["pods"]:
                        rest = fh.read()
                        if rest:
                            yield rest
                        return
                    time.sleep(0.05)
        del pod
        return Stream(chunks())


CONTAINER = "trial"


class Batch:
    """BatchV1Api's methods the backend calls."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    def create_namespaced_job(self, namespace: str, body: Any, **_: Any) -> Any:
        self.c.call("create_namespaced_job")
        return self.c.create("jobs", namespace, body)

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        self.c.call("read_namespaced_job")
        with self.c.lock:
            return to_model(self.c.get("jobs", namespace, name), "jobs")

    def list_namespaced_job(self, namespace: str, label_selector: str | None = None, watch: bool = False,
                            resource_version: str | None = None, timeout_seconds: float | None = None,
                            **_: Any) -> V1JobList:
        self.c.call("watch_namespaced_job" if watch else "list_namespaced_job")
        return self.c.listing("jobs", namespace, label_selector, watch, resource_version, timeout_seconds)

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str | None = None,
                              **_: Any) -> None:
        self.c.call("delete_namespaced_job")
        self.c.delete_job(namespace, name, propagation_policy)

    def delete_collection_namespaced_job(self, namespace: str, label_selector: str | None = None,
                                         propagation_policy: str | None = None, **_: Any) -> None:
        self.c.call("delete_collection_namespaced_job")
        for job in [j for j in self.c.jobs() if matches(j["metadata"].get("labels"), label_selector)]:
            self.c.delete_job(namespace, job["metadata"]["name"], propagation_policy or "Background")


class Core:
    """CoreV1Api's methods the backend calls."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    def create_namespaced_config_map(self, namespace: str, body: Any, **_: Any) -> Any:
        self.c.call("create_namespaced_config_map")
        return self.c.create("configmaps", namespace, body)

    def replace_namespaced_config_map(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        self.c.call("replace_namespaced_config_map")
        with self.c.lock:
            old = self.c.get("configmaps", namespace, name)
            new = {**json.loads(json.dumps(to_dict(body))), "metadata": {**old["metadata"], **to_dict(body)["metadata"]}}
            new["metadata"]["namespace"] = namespace
            return to_model(self.c.put("configmaps", new), "configmaps")

    def delete_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> None:
        self.c.call("delete_namespaced_config_map")
        with self.c.lock:
            self.c.put("configmaps", self.c.get("configmaps", namespace, name), "DELETED")

    def list_namespaced_config_map(self, namespace: str, label_selector: str | None = None,
                                   **_: Any) -> V1ConfigMapList:
        self.c.call("list_namespaced_config_map")
        return self.c.listing("configmaps", namespace, label_selector, False, None, None)

    def delete_collection_namespaced_config_map(self, namespace: str, label_selector: str | None = None,
                                                **_: Any) -> None:
        self.c.call("delete_collection_namespaced_config_map")
        with self.c.lock:
            for (ns, _name), cm in list(self.c.store["configmaps"].items()):
                if ns == namespace and matches(cm["metadata"].get("labels"), label_selector):
                    self.c.put("configmaps", cm, "DELETED")

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, watch: bool = False,
                            resource_version: str | None = None, timeout_seconds: float | None = None,
                            **_: Any) -> V1PodList:
        self.c.call("watch_namespaced_pod" if watch else "list_namespaced_pod")
        return self.c.listing("pods", namespace, label_selector, watch, resource_version, timeout_seconds)

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> None:
        self.c.call("delete_namespaced_pod")
        with self.c.lock:
            self.c.terminate(self.c.get("pods", namespace, name))

    def delete_collection_namespaced_pod(self, namespace: str, label_selector: str | None = None, **_: Any) -> None:
        self.c.call("delete_collection_namespaced_pod")
        for pod in [p for p in self.c.pods() if matches(p["metadata"].get("labels"), label_selector)]:
            self.c.terminate(pod)

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str | None = None,
                                follow: bool = False, _preload_content: bool = True, **_: Any) -> Any:
        self.c.call("read_namespaced_pod_log")
        return self.c.log_stream(namespace, name)


def wait(cond: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
