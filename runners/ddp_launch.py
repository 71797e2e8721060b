"""Start one trial as N processes with torchrun: ``ddp_launch.py N`` (COORD_SPEC names the
trial's spec.json, as for run_trial.py).

torchrun (``python -m torch.distributed.run``) runs ``run_trial.py`` N times on this host,
rendezvous through a c10d store on 127.0.0.1 at a port that was free a moment ago (never
0.0.0.0: gloo and NCCL are told to use the loopback interface too). This process stays
between the agent and torchrun for two reasons:

- the exit code: torchrun reports any failed rank as 1, so rank 0 writes the protocol's code
  (75 after a SIGTERM checkpoint, 78 for bad parameters) to a file, read back here;
- SIGTERM reaches this process group (the agent's cancel, SLURM's --signal through the job
  script): torchrun passes it to its ranks, which agree to stop, checkpoint and end; this
  process waits for torchrun instead of dying first.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(procs, port, python=sys.executable):
    return [python, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=%d" % procs,
            "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:%d" % port, "--master-addr=127.0.0.1",
            "--max-restarts=0", "--monitor-interval=0.1", os.path.join(HERE, "run_trial.py")]


def main(argv):
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: ddp_launch.py PROCS", file=sys.stderr)
        return 2
    procs = int(argv[0])
    spec_path = os.environ.get("COORD_SPEC", "")
    exit_path = os.path.join(os.path.dirname(os.path.abspath(spec_path)) if spec_path else os.getcwd(),
                             "ddp-exit")
    try:
        os.unlink(exit_path)  # a SLURM requeue runs the job again in the same directory
    except FileNotFoundError:
        pass
    env = dict(os.environ, COORD_DDP_EXIT=exit_path, MASTER_ADDR="127.0.0.1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
               NCCL_SOCKET_IFNAME=os.environ.get("NCCL_SOCKET_IFNAME", "lo"),
               TORCHELASTIC_ERROR_FILE=os.environ.get("TORCHELASTIC_ERROR_FILE", exit_path + ".error.json"))
    # torchrun in a process group of its own, so a SIGTERM reaches it once, from here (a
    # second one would cut its own shutdown short); it dies with this process all the same
    child = subprocess.Popen(command(procs, free_port()), env=env, process_group=0, preexec_fn=_die_with_parent)
    signal.signal(signal.SIGTERM, lambda s, f: _forward(child, s))
    rc = child.wait()
    try:
        with open(exit_path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return rc if rc > 0 else 128 - rc if rc < 0 else 1  # no record: a crash


_forwarded = []


def _forward(child, sig):
    if _forwarded:  # the agent's SIGTERM, then SLURM's: torchrun is already stopping
        return
    _forwarded.append(sig)
    try:
        child.send_signal(sig)
    except ProcessLookupError:
        pass


def _die_with_parent():
    """In torchrun's child, before exec: the kernel kills it when this process dies (a
    SIGKILL of the trial's group), and torchrun's ranks die with torchrun in turn."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
