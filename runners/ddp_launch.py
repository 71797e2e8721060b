"""Start one trial as N processes with torchrun: ``ddp_launch.py N`` (COORD_SPEC names the
trial's spec.json, as for run_trial.py).

This process is torchrun: it calls ``torch.distributed.run.main`` (what ``python -m
torch.distributed.run`` runs) with one node, N ranks of ``run_trial.py`` and a c10d
rendezvous at 127.0.0.1 on a free port. Three things are added around it:

- loopback only: torchrun's TCP stores (the rendezvous's and the ranks' bootstrap store)
  listen on every interface, whatever address they are given; here each server store
  gets a socket already bound to 127.0.0.1 (TCPStore's ``master_listen_fd``), and gloo
  and NCCL are told to use the loopback interface, so nothing of a trial is reachable
  from another machine;
- the exit code: torchrun reports any failed rank as 1, so rank 0 writes the protocol's
  code (75 after a SIGTERM checkpoint, 78 for bad parameters) to ``ddp-exit``, read back
  here;
- no orphans: torchrun starts each rank in a session of its own, out of reach of the
  agent's process-group kill; each rank dies with this process (``ddp.py``,
  PR_SET_PDEATHSIG). A SIGTERM (the agent's cancel; SLURM's --signal through the job
  script) is torchrun's to pass on to the ranks, which agree to stop, checkpoint and end.
"""

import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_sockets = []  # the stores' listening sockets, open while torchrun runs


def arguments(procs):
    return ["--nnodes=1", "--nproc-per-node=%d" % procs, "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0",
            "--local-addr=127.0.0.1", "--master-addr=127.0.0.1", "--max-restarts=0", "--monitor-interval=0.1",
            os.path.join(HERE, "run_trial.py")]


def _loopback_stores():
    """Make every server TCPStore torchrun creates listen on 127.0.0.1 only."""
    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

    real = dist.TCPStore

    def store(host_name, port, *args, **kwargs):
        is_master = kwargs.get("is_master", args[1] if len(args) > 1 else False)
        if is_master and kwargs.get("master_listen_fd") is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", int(port)))
            sock.listen(128)
            _sockets.append(sock)
            host_name, port, kwargs["master_listen_fd"] = "127.0.0.1", sock.getsockname()[1], sock.fileno()
            try:
                return real(host_name, port, *args, **kwargs)
            except (RuntimeError, ValueError):  # a torch whose libuv store takes no listening socket
                return real(host_name, port, *args, **{**kwargs, "use_libuv": False})
        return real(host_name, port, *args, **kwargs)

    dist.TCPStore = store  # dynamic_rendezvous's bootstrap store: dist.TCPStore(...)
    c10d_rendezvous_backend.TCPStore = store  # the rendezvous's: imported by name


def main(argv):
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: ddp_launch.py PROCS", file=sys.stderr)
        return 2
    spec_path = os.environ.get("COORD_SPEC", "")
    exit_path = os.path.join(os.path.dirname(os.path.abspath(spec_path)) if spec_path else os.getcwd(), "ddp-exit")
    try:
        os.unlink(exit_path)  # a SLURM requeue runs the job again in the same directory
    except FileNotFoundError:
        pass
    os.environ.update(COORD_DDP_EXIT=exit_path, MASTER_ADDR="127.0.0.1",
                      OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                      GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
                      NCCL_SOCKET_IFNAME=os.environ.get("NCCL_SOCKET_IFNAME", "lo"))
    rc = 1
    try:
        _loopback_stores()
        from torch.distributed import run

        run.main(arguments(int(argv[0])))
        rc = 0
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # a rank failed (ChildFailedError), or a signal stopped torchrun
        print("coord: torchrun ended: %s: %s" % (type(exc).__name__, str(exc)[-2000:]), file=sys.stderr)
    try:
        with open(exit_path) as fh:
            return int(fh.read().strip())  # rank 0's own end: what the protocol reads
    except (OSError, ValueError):
        return rc or 1  # no record: rank 0 never finished, a crash


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
