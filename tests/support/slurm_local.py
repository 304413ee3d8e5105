"""A throw-away single-node Slurm for tests: Debian's slurmctld, slurmd and munge, unpacked into a temp folder.

Nothing is installed. The 8 Debian packages are fetched with ``apt-get download`` (package lists, if the machine has
none, are fetched into the temp folder too) or taken from ``$YOLO_ATTN_SLURM_DEBS``, and unpacked with ``dpkg -x``.
The daemons run from there with their own munge key, config, ports and state under the temp folder:
``proctrack/linuxproc``, no cgroups, no accounting. Slurm looks for ``slurmstepd`` at the path it was built with
(``/usr/sbin``), so the daemons run in a private mount namespace (``unshare --mount``) where the unpacked ``usr/sbin``
is bind-mounted over ``/usr/sbin``; the machine's own ``/usr/sbin`` is untouched. Needs root (as CI and these
machines have) and Linux mount namespaces.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = (
    "libhwloc15",
    "liblua5.1-0",
    "libmunge2",
    "munge",
    "slurm-wlm-basic-plugins",
    "slurm-client",
    "slurmctld",
    "slurmd",
)


class SlurmUnavailableError(RuntimeError):
    """Why a local Slurm could not be started (the test skips with this text)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _debs(folder: Path) -> list[Path]:
    given = os.environ.get("YOLO_ATTN_SLURM_DEBS")
    if given and sorted(Path(given).glob("*.deb")):
        return sorted(Path(given).glob("*.deb"))
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise SlurmUnavailableError("no apt-get to fetch Debian's slurmctld, slurmd and munge packages")
    proc = subprocess.run(["apt-get", "download", *PACKAGES], cwd=folder, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:  # no package lists yet: fetch them into the temp folder, not the machine's
        lists = folder / "lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        options = ["-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
        subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, timeout=300)
        proc = subprocess.run(
            ["apt-get", *options, "download", *PACKAGES], cwd=folder, capture_output=True, text=True, timeout=300
        )
    debs = sorted(folder.glob("*.deb"))
    if proc.returncode != 0 or len(debs) < len(PACKAGES):
        raise SlurmUnavailableError(f"apt-get download {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-300:]}")
    return debs


class LocalSlurm:
    """A running single-node cluster; ``env`` holds what clients (sbatch, squeue, submitit) need."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 60) -> LocalSlurm:
        """Unpack, configure and start munged, slurmctld and slurmd; wait until the node is idle."""
        if os.geteuid() != 0:
            raise SlurmUnavailableError("starting slurmd needs root")
        if shutil.which("unshare") is None or shutil.which("dpkg") is None:
            raise SlurmUnavailableError("needs dpkg and unshare (util-linux)")
        self.root.mkdir(parents=True, exist_ok=True)
        for deb in _debs(self.base / "debs"):
            subprocess.run(["dpkg", "-x", str(deb), str(self.root)], check=True)
        sbin, lib = self.root / "usr" / "sbin", self.root / "usr" / "lib" / "x86_64-linux-gnu"
        for name in ("slurmctld", "slurmd", "slurmstepd"):
            if not (sbin / name).exists():
                (sbin / name).symlink_to(f"{name}-wlm")
        run = self.base / "run"
        for sub in ("state", "spool", "log", "munge"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        (run / "munge").chmod(0o700)
        key = run / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge_socket = run / "munge" / "munge.socket"
        host = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        conf = self.base / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=yoloattn",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={munge_socket}",
                    f"PluginDir={lib / 'slurm-wlm'}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={run / 'state'}",
                    f"SlurmdSpoolDir={run / 'spool'}",
                    f"SlurmctldPidFile={run / 'slurmctld.pid'}",
                    f"SlurmdPidFile={run / 'slurmd.pid'}",
                    f"SlurmctldLogFile={run / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={run / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SwitchType=switch/none",
                    "MpiDefault=none",
                    "SchedulerType=sched/builtin",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "ReturnToService=2",
                    "JobRequeue=1",
                    "MaxArraySize=1000",
                    "SlurmdTimeout=30",
                    "InactiveLimit=0",
                    "KillWait=1",  # a requeued task is killed 1 s after SIGTERM (submitit ignores SIGTERM)
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
                    "",
                ]
            )
        )
        self.env = {
            "SLURM_CONF": str(conf),
            "PATH": f"{self.root / 'usr' / 'bin'}:{os.environ.get('PATH', '')}",
            "LD_LIBRARY_PATH": os.pathsep.join(
                filter(None, [str(lib / "slurm-wlm"), str(lib), os.environ.get("LD_LIBRARY_PATH", "")])
            ),
        }
        script = (
            f"mount --bind {sbin} /usr/sbin && "
            f"/usr/sbin/munged --force --foreground --socket={munge_socket} --key-file={key} "
            f"--pid-file={run / 'munge' / 'munged.pid'} --log-file={run / 'log' / 'munged.log'} "
            f"--seed-file={run / 'munge' / 'munged.seed'} & "
            f"sleep 1; /usr/sbin/slurmctld -D -i & /usr/sbin/slurmd -D & wait"
        )
        env = {**os.environ, **self.env}
        log = (run / "log" / "daemons.log").open("w")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SlurmUnavailableError(f"the Slurm daemons exited: {self.logs()[-800:]}")
            proc = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            last = proc.stdout.strip() + proc.stderr.strip()
            if proc.returncode == 0 and proc.stdout.strip() in {"idle", "mix", "alloc"}:
                return self
            time.sleep(0.5)
        self.stop()
        raise SlurmUnavailableError(f"the local Slurm did not come up in {timeout:.0f} s (sinfo: {last[-300:]})")

    def logs(self) -> str:
        """The daemons' log files, concatenated."""
        folder = self.base / "run" / "log"
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')}" for p in sorted(folder.glob("*.log")))

    def stop(self) -> None:
        """Stop this cluster's jobs and daemons: the process group started here, and every process left running with
        this cluster's ``SLURM_CONF`` in its environment (slurmstepd daemonizes, and job steps can outlive slurmd)."""
        if self.process is not None and self.process.poll() is None:
            env = {**os.environ, **self.env}
            subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30)
            time.sleep(2)
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None
        marker = f"SLURM_CONF={self.base / 'slurm.conf'}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), 9)
            except (OSError, ProcessLookupError):
                continue
