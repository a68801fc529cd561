"""`python -m hub.cli serve --config FILE` as the benches run it (bench/exchange.py, bench/scale.py): a
process of its own with this checkout on its path and no `ACKHUB_` settings from the caller's
environment, its output in a log file. Each bench decides what "ready" means for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class ServeProcess:
    def __init__(
        self, config: Path, log: Path, args: list[str] | None = None, repo: Path | None = None
    ) -> None:
        """`args`: more arguments of `serve` (such as `--workers 2`); `repo`: the checkout whose hub runs
        (default this one; another one for before/after pairs in one run)."""
        self.config = config
        self.log = log
        self.args = args or []
        self.repo = repo or REPO
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self, append: bool = False) -> subprocess.Popen[bytes]:
        """Start the hub; its output goes to the log (`append`: after what an earlier run left there)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACKHUB_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.repo), env.get("PYTHONPATH", "")]))
        with self.log.open("ab" if append else "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ackhub.hub.cli", "serve", "--config", str(self.config), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.repo,
                env=env,
            )
        return self.process

    def check_running(self) -> None:
        """Raise, with the end of the log, if the hub has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def terminate(
        self, timeout: float, kill_wait: float = 5, on_kill: Callable[[], None] | None = None
    ) -> float:
        """SIGTERM and wait (a clean stop signs a last checkpoint), killing it after `timeout` seconds;
        returns how long it took (0 when it was not running)."""
        if not self.alive():
            return 0.0
        assert self.process is not None
        began = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill()
            self.process.kill()
            self.process.wait(kill_wait)
        return time.perf_counter() - began
