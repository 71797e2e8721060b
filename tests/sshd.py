"""Real OpenSSH servers on loopback for tests: each has its own host key, authorized_keys,
sftp subsystem and work dir; one known_hosts file for the project; never ~/.ssh."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    os.chmod(path, 0o600)
    return (path.with_suffix(".pub")).read_text().strip()


@dataclass
class SSHHost:
    name: str
    port: int
    root: Path
    work_dir: Path
    user: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host_pub(self) -> str:
        return (self.root / "host_key.pub").read_text().strip()

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_pub.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}"

    def start(self) -> None:
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd {self.name} did not start: {(self.root / 'sshd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        """Kill the listener only: sessions already open live on, as with a real sshd restart."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def make_host(base: Path, name: str, client_pub: str, user: str = "root") -> SSHHost:
    root = base / name
    root.mkdir(parents=True)
    work = root / "work"
    work.mkdir()
    keygen(root / "host_key")
    (root / "authorized_keys").write_text(client_pub + "\n")
    home = Path(pwd.getpwnam(user).pw_dir)
    if user != "root":
        shutil.chown(work, user)
    port = free_port()
    (root / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root / 'host_key'}
PidFile none
AuthorizedKeysFile {root / 'authorized_keys'}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    del home
    return SSHHost(name, port, root, work, user)


def ensure_user(name: str, shell: str) -> bool:
    """A local account with the given login shell (tests of bash vs dash). Needs root."""
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        pass
    if os.geteuid() != 0:
        return False
    # '*' rather than useradd's locked '!': sshd without PAM refuses locked accounts even for keys
    subprocess.run(["useradd", "-m", "-s", shell, "-p", "*", name], check=True, capture_output=True)
    return True
