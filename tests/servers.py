"""Real servers for the team-mode tests: PostgreSQL (Debian's package) and ``mlflow server``, on 127.0.0.1.

The servers start once per test session and are shared by the xdist workers: the first worker
to need them starts them, the last one to finish stops them (a count kept under a file lock).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

STARTUP_SECONDS = 300  # a fresh PostgreSQL database gets MLflow's whole schema on the first start


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_outside_ephemeral_range() -> int:
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range.

    A port that is closed for a while (an outage) must still be free when it reopens: inside the
    ephemeral range the kernel may hand it to an outgoing connection meanwhile, even to a client
    retrying that very port (a TCP self-connect), and the reopen then fails with "address in use".
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").is_file() else 32768
    for port in random.Random(os.getpid()).sample(range(max(1024, low - 20000), low), 200):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port on 127.0.0.1 below {low}")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's program folder (Debian puts it under /usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root, which CI is; the Debian package creates the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class ServerUnavailable(RuntimeError):
    """A server could not be started here; the reason says why."""


@dataclass
class TeamServers:
    """Where the running servers are, and how to stop them."""

    folder: str
    postgres_port: int
    mlflow_port: int
    mlflow_pgid: int

    @property
    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` of the team's MLflow server."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def database_url(self, database: str) -> str:
        """SQLAlchemy URL of a database on the PostgreSQL server."""
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{database}"

    @property
    def artifacts(self) -> Path:
        """Where the MLflow server keeps the artifacts it proxies."""
        return Path(self.folder) / "artifacts"


def start_postgres(folder: Path, port: int, databases: list[str]) -> None:
    """Create a cluster in ``folder``, start it on 127.0.0.1:``port`` and create ``databases``."""
    binaries = postgres_bin()
    if binaries is None:
        raise ServerUnavailable("PostgreSQL is not installed (apt-get install postgresql)")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, log = folder / "data", folder / "postgres.log"
    steps = [
        [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o",
         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
    ]
    for step in steps:
        done = subprocess.run(_as_postgres_user(step), capture_output=True, text=True)
        if done.returncode:
            raise ServerUnavailable(f"{Path(step[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as connection:
        for database in databases:
            connection.execute(f"CREATE DATABASE {database}")


def stop_postgres(folder: Path) -> None:
    """Stop the cluster in ``folder`` at once."""
    binaries = postgres_bin()
    if binaries is not None and (folder / "data").is_dir():
        subprocess.run(_as_postgres_user([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"]),
                       capture_output=True)


def start_mlflow(backend_uri: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` with proxied artifacts; returns once its tracking API answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
               "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # Without the job runner (MLflow's GenAI jobs, unused by tracking): on a database backend it
    # starts eight more processes, each importing MLflow (about 25 CPU-seconds) and polling after.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("a") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"mlflow server exited with {process.returncode}: {log.read_text()[-800:]}")
        try:
            # /health answers before the tracking API does: wait for an API call a client makes.
            api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
            with urllib.request.urlopen(api, timeout=10) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    stop_process_group(process.pid)
    raise ServerUnavailable(f"mlflow server did not answer within {STARTUP_SECONDS} s")


def stop_process_group(pgid: int) -> None:
    """Stop a server started in its own session, and its worker processes."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        for _ in range(100):
            os.killpg(pgid, 0)
            time.sleep(0.1)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _start_all() -> TeamServers:
    # Not under pytest's own temporary folder: its root is private to the user, and PostgreSQL runs as another.
    folder = Path(tempfile.mkdtemp(prefix="mbrl-team-"))
    folder.chmod(0o755)
    postgres_port, mlflow_port = free_port(), free_port()
    try:
        start_postgres(folder, postgres_port, ["mlflow", "optuna"])
        servers = TeamServers(str(folder), postgres_port, mlflow_port, 0)
        (folder / "artifacts").mkdir()
        process = start_mlflow(servers.database_url("mlflow"), servers.artifacts, mlflow_port, folder / "mlflow.log")
        servers.mlflow_pgid = process.pid
        return servers
    except BaseException:
        stop_postgres(folder)
        raise


def _stop_all(servers: TeamServers) -> None:
    stop_process_group(servers.mlflow_pgid)
    stop_postgres(Path(servers.folder))
    shutil.rmtree(servers.folder, ignore_errors=True)


@contextmanager
def shared_team_servers(shared_folder: Path):
    """The team's servers, started by the first user among the session's workers and stopped by the last."""
    state, lock = shared_folder / "team_servers.json", FileLock(str(shared_folder / "team_servers.lock"))
    with lock:
        record = json.loads(state.read_text()) if state.is_file() else {"users": 0}
        if record["users"] == 0:
            try:
                record["servers"] = asdict(_start_all())
            except ServerUnavailable as error:
                record["servers"], record["error"] = None, str(error)
        record["users"] += 1
        state.write_text(json.dumps(record))
    try:
        if record.get("servers") is None:
            raise ServerUnavailable(record.get("error", "unknown"))
        yield TeamServers(**record["servers"])
    finally:
        with lock:
            record = json.loads(state.read_text())
            record["users"] -= 1
            if record["users"] == 0:
                if record.get("servers"):
                    _stop_all(TeamServers(**record["servers"]))
                record = {"users": 0}
            state.write_text(json.dumps(record))


class Outage:
    """A TCP forwarder in front of a running server: closing it is an outage, reopening it the return.

    The server itself keeps running (restarting ``mlflow server`` costs tens of seconds on a small
    machine); the client sees what it sees when a server goes away: refused connections, and the
    open ones cut.
    """

    def __init__(self, target_port: int) -> None:
        self.port = port_outside_ephemeral_range()
        self._target_port = target_port
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.reopen()

    @property
    def uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` through the forwarder."""
        return f"http://127.0.0.1:{self.port}"

    def reopen(self) -> None:
        """Listen again on the same port and forward every new connection."""
        for attempt in range(60):  # a just-cut connection may hold the port for a moment
            try:
                self._listener = socket.create_server(("127.0.0.1", self.port))
                break
            except OSError:
                if attempt == 59:
                    raise
                time.sleep(1.0)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        try:
            # A close alone leaves the socket listening while the accepting thread is blocked in
            # accept(): one more connection gets through, and reopening the port fails with
            # "Address already in use". A shutdown wakes that thread and stops the listening.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the outage began
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
