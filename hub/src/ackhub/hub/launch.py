"""The one way to run a hub from code, for the demo, the tests and the benchmarks.

- `HubThread`: a `HubServer` in this process, on an event loop of its own in a background thread (the
  demo; tests that drive it with an injected clock);
- `HubProcess`: `ackhub serve --config FILE` as a process of its own (tests that SIGKILL it, benchmarks
  that measure it), with no `ACKHUB_*` setting from the caller's environment and its output in a log file.
  With `repo` it runs another checkout's hub, for before/after pairs in one run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ackhub.adapters.loader import Adapters
from ackhub.core.clock import Clock
from ackhub.hub.config import Settings
from ackhub.hub.server import HubServer

T = TypeVar("T")
# Reconnect within a fraction of a second once the hub is back (gRPC's default backoff grows to minutes).
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
)


class HubThread:
    """A `HubServer` on an event loop in a background thread; `run()` executes a coroutine on that loop
    from the caller's thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        scheduled_sweeps: bool = True,
        adapters: Adapters | None = None,
    ) -> None:
        """`adapters`: instead of those of the `ackhub.adapters` entry points (tests)."""
        self.server = HubServer(settings, clock=clock, scheduled_sweeps=scheduled_sweeps, adapters=adapters)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="hub-loop")
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> int:
        """Start serving; the port it listens on."""
        return self.run(self.server.start())

    def stop(self, grace_s: float = 0.5) -> None:
        try:
            self.run(self.server.stop(grace_s), 15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


def serve_command(repo: Path | None) -> tuple[list[str], dict[str, str]]:
    """The command that starts `ackhub serve` of `repo` (None: the installed one) and its environment.

    A checkout with a virtual environment of its own (`make .venv/.installed` there) runs with that
    environment's Python, so that its adapters' entry points are its own. Otherwise it runs with this
    Python and each distribution's src/ first on the path; a checkout from before the distributions (a
    top-level `hub/` package) needs its own environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACKHUB_")}
    if repo is None:
        return [sys.executable, "-m", "ackhub.hub.cli", "serve"], env
    module = "hub.cli" if (repo / "hub" / "cli.py").exists() else "ackhub.hub.cli"
    own = repo / ".venv" / "bin" / "python"
    if own.exists():
        return [str(own), "-m", module, "serve"], env
    if module == "hub.cli":
        raise RuntimeError(f"{repo} is of the earlier layout: run `make .venv/.installed` there first")
    paths = sorted(str(p) for p in repo.glob("*/src"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", module, "serve"], env


class HubProcess:
    """`ackhub serve --config <config> [args]`; `start()` again after `kill()` restarts it on the same store."""

    def __init__(
        self,
        config: Path,
        log: Path,
        args: Sequence[str] = (),
        repo: Path | None = None,
        target: str = "",
    ) -> None:
        """`args`: more arguments of `serve` (such as `--workers 2`); `repo`: the checkout whose hub runs
        (default: the installed one); `target`: the address it listens on, for the health check."""
        self.target = target
        self.config = config
        self.log = log
        self.args = list(args)
        self.repo = repo
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self, append: bool = True) -> subprocess.Popen[bytes]:
        """Start the process and return at once; its output goes to the log (after what an earlier run left
        there, unless not `append`)."""
        assert not self.alive(), "the hub is already running"
        command, env = serve_command(self.repo)
        with self.log.open("ab" if append else "wb") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*command, "--config", str(self.config), *self.args],
                cwd=self.repo,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self.process

    def start(self, timeout: float = 20) -> float:
        """Launch and wait until the target answers the health check SERVING; the seconds that took."""
        began = time.perf_counter()
        self.launch()
        self.wait_ready(timeout)
        return time.perf_counter() - began

    def wait_ready(self, timeout: float) -> None:
        """Poll `grpc.health.v1.Health/Check` until SERVING; fail if the process exits or time runs out."""
        assert self.target, "no target to check"
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target, options=FAST_RECONNECT) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self.check_running()
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5, wait_for_ready=True)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ackhub serve not SERVING after {timeout:.0f} s\n{self.tail()}")

    def check_running(self) -> None:
        """Raise, with the end of the log, if the hub has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"ackhub serve exited with {self.process.returncode}:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or closed by the hub."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait for the orderly shutdown (which signs a last checkpoint); the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self, timeout: float, kill_wait: float = 5, on_kill: Callable[[], None] | None = None) -> float:
        """SIGTERM, killing it after `timeout` seconds; how long it took (0 when it was not running)."""
        if not self.alive():
            return 0.0
        began = time.perf_counter()
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill()
            assert self.process is not None
            self.process.kill()
            self.process.wait(kill_wait)
        return time.perf_counter() - began

    def close(self) -> None:
        """Make sure the process is gone (for `finally` blocks and fixtures)."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
