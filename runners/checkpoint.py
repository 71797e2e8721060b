"""Trial checkpoints (stdlib only; runs on every host).

A checkpoint is one file, ``step-<NNNNNNNN>.ckpt`` in the trial's checkpoint directory:

    COORDCK1 <sha256 of the payload> <sha256 of the trial's parameters>\\n<payload: a pickle>

written to a temporary name, fsync'd and renamed, so a crash or a full disk leaves the
previous checkpoint intact; the newest two are kept. Loading walks from the newest back
and takes the first whose checksum and parameters match, so a torn or corrupt file is
skipped, never loaded. Each save is announced on stdout as
``[coord-ckpt] {"file": ..., "step": ..., "sha256": ...}``; the coordinator copies it home,
and from there to whichever host runs the trial's next attempt.

The files are written by the trial itself into a directory only its user can read; the
checksum guards against damage, not against someone who can already write there.
"""

import hashlib
import json
import os
import pickle
import sys

MAGIC = b"COORDCK1"
PREFIX = "[coord-ckpt]"
KEEP = 2


def params_key(params):
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _name(step):
    return "step-%08d.ckpt" % step


def _files(directory):
    try:
        names = [n for n in os.listdir(directory) if n.startswith("step-") and n.endswith(".ckpt")]
    except OSError:
        return []
    return sorted(names, reverse=True)


def save(directory, step, state, key, out=None):
    """Write a checkpoint; return its name, or None if it could not be written (the
    previous one stays; the trial goes on without this one)."""
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(payload).hexdigest()
    name = _name(step)
    tmp = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"%s %s %s\n" % (MAGIC, digest.encode(), key.encode()))
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, os.path.join(directory, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself survives a host crash
        finally:
            os.close(dfd)
    except OSError as exc:  # disk full, quota, read-only: keep training, keep the last good one
        print("coord: checkpoint at step %d not written: %s" % (step, exc), file=sys.stderr)
        return None
    for old in _files(directory)[KEEP:]:
        try:
            os.unlink(os.path.join(directory, old))
        except OSError:
            pass
    stream = out or sys.stdout
    stream.write("%s %s\n" % (PREFIX, json.dumps({"file": name, "step": step, "sha256": digest})))
    stream.flush()
    return name


def verify(data, key=None):
    """The payload of a checkpoint file's bytes if it is whole (and for ``key``), else None."""
    header, sep, payload = data.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        return None
    if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        return None
    if key is not None and parts[2] != key.encode():
        return None
    return payload


def load_latest(directory, key):
    """(step, state) of the newest valid checkpoint for these parameters, or None."""
    for name in _files(directory):
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as fh:
                payload = verify(fh.read(), key)
        except OSError:
            payload = None
        if payload is None:
            print("coord: checkpoint %s is damaged or not this trial's; trying an older one" % name,
                  file=sys.stderr)
            continue
        try:
            return int(name[5:13]), pickle.loads(payload)
        except Exception as exc:  # a checksum-valid file from an incompatible library version
            print("coord: checkpoint %s cannot be loaded (%s); trying an older one" % (name, exc),
                  file=sys.stderr)
    return None
