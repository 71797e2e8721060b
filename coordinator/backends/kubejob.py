"""Kubernetes objects made from a launch plan (``plan.py``), and how a Job and its Pod ended.
Pure (no I/O, no client): the manifests are plain dicts, tested as data and validated with
kubernetes-validate --strict (tests/kube/test_kubejob.py); the endings are read from the
objects as the API serialises them (camelCase dicts).

One Job runs one trial attempt, named ``<run>-<trial>-a<attempt>``, with backoffLimit 0
(coord owns retries) and a podFailurePolicy whose rules name why it failed: an evicted or
preempted pod (condition DisruptionTarget) and exit 75 (the trial checkpointed and asks to be
run again) each fail the Job at once with reason PodFailurePolicy. activeDeadlineSeconds is
the trial's time limit; ttlSecondsAfterFinished lets finished Jobs go. The runner scripts
(one ConfigMap per run) and the attempt's ``spec.json`` (one ConfigMap per attempt) are
mounted read-only; the registry's volume holds the data, the checkpoints and the attempt's
files, so an evicted attempt's successor resumes from its checkpoint wherever it lands.
Every object carries the run's labels, so cleanup finds them all by one selector.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from coordinator import protocol
from coordinator.backends.plan import LaunchPlan
from coordinator.config.kubecfg import KubeOptions

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL, TRIAL_LABEL, ATTEMPT_LABEL = "coord.dev/run", "coord.dev/trial", "coord.dev/attempt"
RUNNERS_MOUNT, SPEC_MOUNT = "/etc/coord/runners", "/etc/coord/attempt"
CONTAINER = "trial"
TERMINATION_LOG = "/dev/termination-log"
MAX_NAME = 63  # a Job's name is also a label value on its pods: at most 63 characters
_RUN_PART = 40  # the run's part of every name, hash included: room for "-<trial>-a<attempt>"
# pulling the image failed; after the kubelet's retries for PULL_GRACE_S the attempt ends
PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                         "CreateContainerConfigError", "CreateContainerError"})
HOPELESS = frozenset({"InvalidImageName", "ErrImageNeverPull"})  # no retry of the kubelet's helps

# The container's command: make the attempt's and checkpoint directories on the volume, run
# the trial with its stderr in the attempt dir, pass on the kubelet's SIGTERM (an eviction's
# or the deadline's) so a built-in runner checkpoints, and leave the stderr's tail as the
# termination message, which the API keeps after the pod's logs are gone.
WRAPPER = "\n".join([
    'adir=$1; mkdir -p "$1" "$2" || exit 74; shift 2',
    '"$@" 2>>"$adir/stderr" &',
    "child=$!",
    'trap \'kill -TERM "$child" 2>/dev/null\' TERM',
    'wait "$child"; rc=$?',
    'while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done',
    f'tail -c 4000 "$adir/stderr" > {TERMINATION_LOG} 2>/dev/null',
    'exit "$rc"'])


def run_name(run_id: str, run_dir: str) -> str:
    """The run's part of every object name and its label value: the run's name made a DNS
    label, cut to fit, and a hash of its directory, so two runs of one name never share Jobs."""
    base = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", run_id.lower())).strip("-") or "run"
    digest = hashlib.sha256(run_dir.encode()).hexdigest()[:6]
    return f"{base[:_RUN_PART - 7].rstrip('-')}-{digest}"


def job_name(run: str, number: int, attempt: int) -> str:
    name = f"{run}-{number}-a{attempt}"
    if len(name) > MAX_NAME:  # ~10^15 trials; refuse rather than make a name the API server refuses
        raise ValueError(f"Job name {name!r} is longer than {MAX_NAME} characters")
    return name


def labels(run: str, number: int | None = None, attempt: int | None = None) -> dict[str, str]:
    out = {MANAGED_BY: "coord", RUN_LABEL: run}
    if number is not None:
        out[TRIAL_LABEL] = str(number)
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    return out


def selector(run: str) -> str:
    return f"{MANAGED_BY}=coord,{RUN_LABEL}={run}"


def runners_configmap(run: str, digest: str, files: dict[str, bytes], namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{run}-runners", "namespace": namespace,
                         "labels": labels(run), "annotations": {"coord.dev/runners-hash": digest}},
            "data": {name: data.decode("utf-8") for name, data in files.items()}}


def spec_configmap(plan: LaunchPlan, run: str, name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels(run, plan.number, plan.attempt)},
            "data": {"spec.json": plan.spec_text}}


def cpu_threads(quantity: str) -> int:
    """Threads for a CPU request: 500m -> 1, 2 -> 2, 2.5 -> 2."""
    value = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return max(1, math.floor(value))


def _resources(opts: KubeOptions) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if opts.cpu_limit:
        limits["cpu"] = opts.cpu_limit
    if opts.memory_limit:
        limits["memory"] = opts.memory_limit
    if opts.gpus:  # extended resources are asked for in limits (requests default to them)
        limits["nvidia.com/gpu"] = str(opts.gpus)
    out: dict[str, Any] = {"requests": {"cpu": opts.cpu_request, "memory": opts.memory_request}}
    if limits:
        out["limits"] = limits
    return out


def job_manifest(plan: LaunchPlan, opts: KubeOptions, run: str, name: str) -> dict[str, Any]:
    """The Job of one attempt (see the module docstring)."""
    env = {k: v for k, v in plan.env.items() if k != protocol.ENV_CUDA}  # the device plugin picks the GPUs
    env[protocol.ENV_SPEC] = f"{SPEC_MOUNT}/spec.json"
    work: dict[str, Any] = {"name": "work"}
    if opts.volume_claim:
        work["persistentVolumeClaim"] = {"claimName": opts.volume_claim}
    else:
        work["hostPath"] = {"path": opts.host_path, "type": "DirectoryOrCreate"}
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # podFailurePolicy needs it; coord's next attempt is the retry
        "terminationGracePeriodSeconds": opts.grace_s,
        "automountServiceAccountToken": opts.service_account is not None,
        "enableServiceLinks": False,
        "containers": [{
            "name": CONTAINER, "image": opts.image,
            "command": ["/bin/sh", "-c", WRAPPER, "coord-trial", plan.attempt_dir, plan.checkpoint_dir,
                        *plan.argv],
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "workingDir": plan.cwd, "resources": _resources(opts),
            "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [{"name": "work", "mountPath": opts.mount_path},
                             {"name": "runners", "mountPath": RUNNERS_MOUNT, "readOnly": True},
                             {"name": "attempt", "mountPath": SPEC_MOUNT, "readOnly": True}]}],
        "volumes": [work, {"name": "runners", "configMap": {"name": f"{run}-runners"}},
                    {"name": "attempt", "configMap": {"name": name}}]}
    if opts.node_selector:
        pod["nodeSelector"] = dict(opts.node_selector)
    if opts.tolerations:
        pod["tolerations"] = [t.manifest() for t in opts.tolerations]
    if opts.priority_class:
        pod["priorityClassName"] = opts.priority_class
    if opts.service_account:
        pod["serviceAccountName"] = opts.service_account
    if opts.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in opts.image_pull_secrets]
    spec: dict[str, Any] = {
        "backoffLimit": 0, "ttlSecondsAfterFinished": opts.ttl_s,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                  "values": [protocol.EXIT_REQUEUE]}}]},
        "template": {"metadata": {"labels": labels(run, plan.number, plan.attempt)}, "spec": pod}}
    if plan.timeout_s:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(plan.timeout_s))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": opts.namespace, "labels": labels(run, plan.number, plan.attempt)},
            "spec": spec}


def plan_line(k: KubeOptions, slots: int) -> str:
    """``coord plan``'s line for a Kubernetes platform: what each Job asks for."""
    spot = f", node selector {', '.join(f'{a}={b}' for a, b in k.node_selector)}" if k.node_selector else ""
    spot += f", {len(k.tolerations)} toleration(s)" if k.tolerations else ""
    spot += f", priority class {k.priority_class}" if k.priority_class else ""
    return (f"Kubernetes (experimental: not tested against a real cluster): namespace {k.namespace}, image "
            f"{k.image}, one Job per trial (cpu {k.cpu_request}, memory {k.memory_request}, nvidia.com/gpu {k.gpus}"
            f"{spot}), at most {slots} pending or running")


# -- how it ended -------------------------------------------------------------------------

@dataclass(frozen=True)
class PodView:
    """What coord needs of a Pod (a camelCase dict as the API serialises it)."""

    name: str
    phase: str
    running: bool  # the trial's container has started (its logs can be followed)
    exit_code: int | None  # the container's, once terminated
    reason: str  # the container's terminated reason (Completed, Error, OOMKilled) or waiting reason
    message: str  # the termination message: the stderr's tail (or the waiting message)
    disruption: str | None  # the DisruptionTarget condition's reason: evicted, preempted, node gone

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None or self.phase in ("Succeeded", "Failed")


def pod_view(pod: dict[str, Any]) -> PodView:
    status = pod.get("status") or {}
    disruption = next((c.get("reason") or "DisruptionTarget" for c in status.get("conditions") or []
                       if c.get("type") == "DisruptionTarget" and c.get("status") == "True"), None)
    running, code, reason, message = False, None, "", ""
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        state = cs.get("state") or {}
        if state.get("terminated"):
            t = state["terminated"]
            running, code = True, t.get("exitCode")
            reason, message = t.get("reason") or "", t.get("message") or ""
        elif state.get("running"):
            running = True
        elif state.get("waiting"):
            reason, message = state["waiting"].get("reason") or "", state["waiting"].get("message") or ""
    return PodView((pod.get("metadata") or {}).get("name", ""), status.get("phase") or "Pending", running,
                   code, reason, message, disruption)


def job_end(job: dict[str, Any]) -> tuple[str, str, str] | None:
    """(Complete or Failed, reason, message) once the Job has finished, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"], c.get("reason") or "", c.get("message") or ""
    return None


def ending(name: str, job: dict[str, Any] | None, pod: PodView | None, coord_reason: str | None,
           pull_failed: str | None = None) -> dict[str, Any]:
    """The Outcome fields (less timings and logs) of an attempt whose Job finished or went away.

    ``coord_reason``: coord ended it (cancelled, pruned, timeout). A preemption or eviction
    (DisruptionTarget) after which the trial checkpointed (exit 75) is ``preempted``: its
    successor resumes and spends no retry; one that left no checkpoint is ``lost`` (retried).
    The Job's deadline is ``timed_out``; a Job or pod deleted outside coord is killed (retried).
    """
    end = job_end(job) if job is not None else None
    code = pod.exit_code if pod is not None else None
    tail = pod.message if pod is not None and pod.terminated else ""
    if coord_reason is not None:
        return {"exit_code": code, "cancelled": coord_reason in ("cancelled", "pruned"),
                "timed_out": coord_reason == "timeout", "stderr": tail}
    if pull_failed is not None:  # the trial never started: it would fail again the same way
        return {"exit_code": protocol.EXIT_PERMANENT, "error": f"Job {name}: {pull_failed}",
                "stderr": f"the container never started: {pull_failed}"}
    if end is not None and end[1] == "DeadlineExceeded":
        return {"exit_code": code, "timed_out": True, "stderr": tail,
                "error": f"Job {name} ran past its activeDeadlineSeconds"}
    if pod is not None and pod.disruption is not None:
        if code == protocol.EXIT_REQUEUE:
            return {"exit_code": code, "preempted": True, "stderr": tail,
                    "error": f"pod {pod.name} was {pod.disruption}; the trial checkpointed"}
        return {"exit_code": None, "lost": True, "stderr": tail,
                "error": f"pod {pod.name} was {pod.disruption} (exit {code}) without a checkpoint"}
    if pod is not None and pod.reason == "OOMKilled":
        return {"exit_code": code, "stderr": tail + "\nout of memory (Kubernetes OOMKilled)",
                "error": f"pod {pod.name}: out of memory (OOMKilled)"}
    if job is None:  # its pod was stopped with it: the exit code says whether it checkpointed (75)
        return {"exit_code": code, "lost": code is None, "stderr": tail,
                "error": f"Job {name} was deleted outside coord"}
    if code is not None:
        return {"exit_code": code, "stderr": tail}
    why = f"{end[1]}: {end[2]}" if end else "no exit code"
    return {"exit_code": None, "signal": 9, "error": f"Job {name} failed without an exit code ({why}); "
                                                     "its pod was deleted or lost"}
