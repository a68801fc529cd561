"""`ackhub serve` as a real subprocess, for tests that kill and restart it: a TOML configuration written
from a config dict, a free loopback port, readiness by the gRPC health check, SIGKILL and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
# Reconnect within a fraction of a second once the hub is back (gRPC's default backoff grows to minutes).
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
)


def free_port() -> int:
    """A port that nothing on 127.0.0.1 listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _toml_lines(table: dict[str, Any], path: str) -> list[str]:
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in table.items()
        if not isinstance(value, dict) and not _is_table_array(value)
    ]
    for key, value in table.items():
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            lines += ["", f"[{name}]", *_toml_lines(value, name)]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{name}]]", *_toml_lines(item, name)]
    return lines


def to_toml(config: dict[str, Any]) -> str:
    """TOML for a configuration dict (tables, arrays of tables, strings, numbers, booleans, lists)."""
    text = "\n".join(_toml_lines(config, "")).lstrip("\n") + "\n"
    if tomllib.loads(text) != config:
        raise ValueError("the configuration does not survive a TOML round trip")
    return text


class HubProcess:
    """One `ackhub serve --config <file>`; `start()` again after `kill()` restarts it on the same store."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.target: str = config["server"]["listen"]
        self.config_path = workdir / "hub.toml"
        self.config_path.write_text(to_toml(config), encoding="utf-8")
        self.log_path = workdir / "hub.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, ready_timeout: float = 20) -> None:
        """Start the hub and return once its health check answers SERVING."""
        assert self.process is None or self.process.poll() is not None, "the hub is already running"
        # Only the file decides: no ACKHUB_* override from the environment running the tests.
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ACKHUB_")}
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ackhub.hub.cli", "serve", "--config", str(self.config_path)],
                cwd=REPO,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.wait_ready(ready_timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float) -> None:
        """Poll `grpc.health.v1.Health/Check` until SERVING; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target, options=FAST_RECONNECT) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"ackhub serve exited with {self.process.returncode} before it was ready\n{self.log_tail()}"
                    )
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5, wait_for_ready=True)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"ackhub serve not SERVING after {timeout}s\n{self.log_tail()}")

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or closed by the hub."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait for the hub's orderly shutdown; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        """Make sure the process is gone (for `finally` blocks and fixtures)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
