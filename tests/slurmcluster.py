"""A real one-node SLURM cluster for tests: its own munge key and daemon, its own slurm.conf,
slurmctld and slurmd on loopback, all in a temporary directory, started as root and stopped
afterwards. Never the machine's /etc/slurm or /etc/munge.

Two fake GPUs for GRES are character devices (``mknod FILE c 1 3``, i.e. /dev/null) named in
gres.conf: SLURM only checks that the files exist, so ``--gres=gpu:1`` jobs get a device and
CUDA_VISIBLE_DEVICES set as on a real GPU node. No accounting daemon (slurmdbd) runs, so
``sacct`` has nothing to say; the backend reads ``squeue`` and the exit record its job script
writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
PARTITION = "debug"
NODE = "coordnode"


def available() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [d for d in DAEMONS if not Path(d).exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (scripts/install.sh installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    cpus: int = 2
    gpus: int = 2
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What a SLURM client (sbatch, squeue, ...) needs to talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write(self) -> None:
        etc, state, spool, dev = (self.root / d for d in ("etc", "state", "spool", "dev"))
        for d in (etc, state, spool / NODE, dev, self.root / "munge"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        for i in range(self.gpus):  # fake GPUs: /dev/null's major and minor
            node = dev / f"gpu{i}"
            if not node.exists():
                subprocess.run(["mknod", str(node), "c", "1", "3"], check=True)
        host = socket.gethostname().split(".")[0]
        r = self.root
        conf = f"""\
ClusterName=coordtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.sock
StateSaveLocation={state}
SlurmdSpoolDir={spool}/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=10
MinJobAge=600
SlurmdTimeout=60
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus} RealMemory=1000 Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text(conf)
        (etc / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File={dev}/gpu[0-{self.gpus - 1}]\n")

    def start(self) -> None:
        self.write()
        r = self.root
        m = r / "munge"
        subprocess.run(["/usr/sbin/munged", f"--socket={m}/munge.sock", f"--key-file={m}/munge.key",
                        f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/seed",
                        "--force"], check=True, capture_output=True)
        env = self.env
        for argv in (["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)],
                     ["/usr/sbin/slurmd", "-D", "-N", NODE, "-f", str(self.conf)]):
            log = open(r / f"{Path(argv[0]).name}.out", "ab")  # noqa: SIM115
            self.procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True))
            time.sleep(0.5)
        self.wait_idle()

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited {p.returncode}: {self.logs()}")
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
            last = out.stdout.strip() + out.stderr.strip()
            if out.returncode == 0 and last.rstrip("*") in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test cluster's node never came up ({last}): {self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munge/munged.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "-p", PARTITION], env=self.env, capture_output=True, timeout=30)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait(5)
        pid = self.root / "munge" / "munged.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text().strip()), 15)
        self.procs.clear()


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
