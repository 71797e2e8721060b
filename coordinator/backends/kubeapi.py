"""The Kubernetes API as the Kubernetes backend uses it: the client (imported lazily, so coord
runs without it), one list-then-watch per kind of a run's objects, and a pod's log followed.

``connect`` builds the official client's BatchV1Api and CoreV1Api from the registry's
kubeconfig and context, or the pod's service account (in_cluster). ``Watcher`` lists a
run's Jobs (or Pods) by label selector once, then watches from that list's resourceVersion;
a watch that ends is resumed from the last resourceVersion seen, a 410 Gone (the version
was compacted away) or any other error relists, with a backoff of 0.5 s doubling to 10 s.
Each object seen goes to a callback as the API serialises it (a camelCase dict); a relist
also reports, as deleted, the objects that went away while nobody watched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from coordinator.config.kubecfg import KubeOptions
from coordinator.errors import HostUnreachable, RegistryError

log = logging.getLogger(__name__)

WATCH_S = 30  # one watch request's server-side timeout; it is then resumed
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0
CLIENT = "kubernetes==37.0.2"  # what `pip install 'coord[kubernetes]'` installs


def connect(platform: str, opts: KubeOptions) -> tuple[Any, Any]:
    """(BatchV1Api, CoreV1Api) for a platform; RegistryError without the client, HostUnreachable
    when its kubeconfig or context cannot be loaded."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise RegistryError(f"platform {platform!r} (connection: kubernetes) needs the Kubernetes client, which "
                            f"is not installed: pip install 'coord[kubernetes]' (or pip install {CLIENT})",
                            file=opts.source, key=opts.key_path) from None
    try:
        if opts.in_cluster:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api = client.ApiClient(cfg)
        else:
            api = config.new_client_from_config(config_file=opts.kubeconfig, context=opts.context)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = "the pod's service account" if opts.in_cluster else (opts.kubeconfig or "$KUBECONFIG or ~/.kube/config")
        raise HostUnreachable(platform, "kubernetes", f"cannot load the Kubernetes configuration from {where}"
                              f"{f' (context {opts.context!r})' if opts.context else ''}: {exc}") from None
    return client.BatchV1Api(api), client.CoreV1Api(api)


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of the client's ApiException (None for other errors)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def host_error(platform: str, opts: KubeOptions, exc: BaseException, what: str) -> HostUnreachable:
    """The platform cannot be used: the API's answer in words (RBAC named for 401/403)."""
    status = api_status(exc)
    if status in (401, 403):
        return HostUnreachable(platform, "kubernetes", f"namespace {opts.namespace!r}: not allowed to {what} "
                               f"(HTTP {status}); the account needs create/get/list/watch/delete on jobs, "
                               "pods, pods/log and configmaps there (docs/kubernetes.md)")
    if status == 404:
        return HostUnreachable(platform, "kubernetes", f"namespace {opts.namespace!r} does not exist")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HostUnreachable(platform, "kubernetes", f"namespace {opts.namespace!r}: cannot {what}: {first}")


def check(platform: str, opts: KubeOptions) -> str:
    """What ``coord hosts`` can check without a trial: the configuration loads and the
    namespace answers a list of Jobs. Returns a line saying so; raises HostError/RegistryError."""
    batch, _ = connect(platform, opts)
    try:
        found = batch.list_namespaced_job(opts.namespace, limit=1)
    except Exception as exc:  # noqa: BLE001 - the API, the network or the credentials
        raise host_error(platform, opts, exc, "list jobs") from None
    del found
    return f"namespace {opts.namespace} reachable, jobs listable"


def serialise(obj: Any) -> dict[str, Any]:
    """A client model object (V1Job, V1Pod) as the API server sends it (camelCase)."""
    if isinstance(obj, dict):
        return obj
    from kubernetes.client import ApiClient

    out: dict[str, Any] = ApiClient().sanitize_for_serialization(obj)
    return out


Callback = Callable[[str, dict[str, Any]], None]  # (ADDED | MODIFIED | DELETED, object)


class Watcher:
    """One thread that follows every object of one kind matching a label selector."""

    def __init__(self, lister: Callable[..., Any], namespace: str, selector: str, callback: Callback,
                 stop: threading.Event, name: str) -> None:
        self.lister, self.namespace, self.selector, self.callback = lister, namespace, selector, callback
        self.stop = stop
        self.known: set[str] = set()
        self.lists = 0  # full lists made (tests check that a watch resumes instead of relisting)
        self.synced = threading.Event()  # the first list has been reported
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.thread.start()

    def _relist(self) -> str:
        self.lists += 1
        found = self.lister(self.namespace, label_selector=self.selector)
        now: dict[str, dict[str, Any]] = {}
        for item in found.items:
            obj = serialise(item)
            now[obj["metadata"]["name"]] = obj
        for gone in self.known - set(now):
            self.callback("DELETED", {"metadata": {"name": gone}})
        for obj in now.values():
            self.callback("MODIFIED", obj)
        self.known = set(now)
        self.synced.set()
        return str(found.metadata.resource_version)

    def _run(self) -> None:
        from kubernetes import watch

        version: str | None = None
        backoff = BACKOFF_MIN_S
        while not self.stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                w = watch.Watch()
                for event in w.stream(self.lister, self.namespace, label_selector=self.selector,
                                      resource_version=version, timeout_seconds=WATCH_S,
                                      allow_watch_bookmarks=True):
                    obj = event["raw_object"]
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        name = obj["metadata"]["name"]
                        if event["type"] == "DELETED":
                            self.known.discard(name)
                        else:
                            self.known.add(name)
                        self.callback(event["type"], obj)
                    if self.stop.is_set():
                        w.stop()
                backoff = BACKOFF_MIN_S
            except Exception as exc:  # noqa: BLE001 - the API or the network: relist after a backoff
                if self.stop.is_set():
                    return
                if api_status(exc) != 410:  # 410 Gone: the version was compacted; relist at once
                    log.warning("watching %s in namespace %s failed (%s); relisting in %.1f s", self.selector,
                                self.namespace, exc, backoff)
                    self.stop.wait(backoff)
                    backoff = min(BACKOFF_MAX_S, backoff * 2)
                version = None


def follow_log(core: Any, namespace: str, pod: str, container: str, skip: int,
               line: Callable[[str], None]) -> int:
    """Stream a pod's log from its start, skipping the first ``skip`` lines (already seen by
    an earlier stream of the same pod), calling ``line`` for each other one; returns how many
    lines the log has now. Ends when the container ends (or the stream breaks: the caller
    decides whether to follow again)."""
    resp = core.read_namespaced_pod_log(pod, namespace, container=container, follow=True,
                                        _preload_content=False)
    count, partial = 0, b""
    try:
        for chunk in resp.stream(8192):
            *lines, partial = (partial + chunk).split(b"\n")
            for raw in lines:
                count += 1
                if count > skip:
                    line(raw.decode("utf-8", "replace"))
        if partial:
            count += 1
            if count > skip:
                line(partial.decode("utf-8", "replace"))
    finally:
        resp.release_conn()
    return count
