"""Rank-side helpers for a trial that spans several processes (``procs: N``): torch
DistributedDataParallel under torchrun (``ddp_launch.py`` starts it).

torchrun gives each process RANK, WORLD_SIZE and LOCAL_RANK. A process with WORLD_SIZE 1
(or none) is a plain trial and every helper here is a no-op, so the runners call them
unconditionally. Rank 0 alone prints metric lines, writes checkpoints and the exit record;
every rank takes the same stop decision at the same step (``agree``), so a prune or a
SIGTERM never leaves one rank waiting in a collective for a peer that has gone.
"""

import ctypes
import os
import signal
import sys

EXIT_ENV = "COORD_DDP_EXIT"  # where rank 0 writes its exit code (set by ddp_launch.py)
_state = {"pg": False}


def world():
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank():
    return int(os.environ.get("RANK", "0") or 0)


def local_rank():
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_main():
    return rank() == 0


def device(wanted):
    """This rank's torch device name: its own GPU (cuda:LOCAL_RANK among the ones the
    allocation made visible) or the CPU."""
    if wanted == "cuda":
        import torch

        if torch.cuda.is_available():
            return "cuda:%d" % (local_rank() if world() > 1 else 0)
    return "cpu"


def init(wanted_device):
    """Join the process group once per process: NCCL where this rank has a GPU, gloo on
    the CPU. torchrun starts each rank in a session of its own, out of reach of the agent's
    process-group kill: the kernel kills the rank when torchrun dies (PR_SET_PDEATHSIG), so
    a SIGKILL of the trial's group leaves no orphan."""
    if world() <= 1 or _state["pg"]:
        return
    _die_with_parent()
    import torch.distributed as dist

    backend = "nccl" if device(wanted_device).startswith("cuda") else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    _state["pg"] = True


def _die_with_parent():
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # torchrun died before the call: do not train alone
        os._exit(1)


def wrap(net, dev):
    """The network for training: DistributedDataParallel over all ranks, or itself."""
    if world() <= 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[local_rank()] if dev.startswith("cuda") else None)


def shard(idx):
    """This rank's share of one batch's row indices (every world-th row)."""
    return idx if world() <= 1 else idx[rank()::world()]


def agree(*flags):
    """Each flag true on any rank, for every rank (a max all-reduce): the same decision
    at the same step everywhere."""
    if world() <= 1 or not _state["pg"]:
        return tuple(bool(f) for f in flags)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def _collective_device():
    import torch.distributed as dist

    return "cuda:%d" % local_rank() if dist.get_backend() == "nccl" else "cpu"


def finish(code):
    """The process's exit status under torchrun: rank 0 records the protocol's code (75:
    checkpointed, run again; 78: permanent) for ddp_launch.py, since torchrun turns any
    non-zero exit into 1. A code the protocol reads is exit 0 here; a crash stays a crash."""
    if world() <= 1:
        return code
    path = os.environ.get(EXIT_ENV)
    if is_main() and path:
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as fh:
            fh.write("%d\n" % code)
        os.replace(tmp, path)
    if _state["pg"]:
        import torch.distributed as dist

        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tear down
            pass
    return 0 if code in (0, 65, 75, 78) else code
