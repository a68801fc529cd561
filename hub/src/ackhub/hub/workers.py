"""`ackhub serve --workers N`: N hub processes behind one address, sharing one PostgreSQL database.

The supervisor prepares the database once (reachable, migrated, at this hub's schema revision), then runs N
`ackhub serve` children with the same configuration. Each binds the same gRPC and console addresses with
SO_REUSEPORT, so the kernel spreads connections over them; the database does the rest (claims, wake-ups,
one audit sequence: docs/deploy.md). The supervisor:

- restarts a child that dies (after a short pause, longer if it keeps dying); a child that exits with 2
  (it cannot start as configured) stops the whole group, since its siblings would fail the same way;
- on SIGTERM or SIGINT stops every child cleanly (each finishes its group commits and signs a last
  checkpoint) and exits;
- on SIGHUP restarts the children one at a time — a new process first, ready before the old one stops —
  so the address keeps answering throughout (a rolling restart, for a new configuration or version).

The children keep their counters and histograms in a folder of the supervisor's
(`ackhub.hub.console.metrics.SHARED_METRICS_ENV`), so `/metrics` on the shared console port reports the
whole group whichever child answers, and a restarted child's counts are not lost.

Several machines: run `ackhub serve` (with or without `--workers`) on each, with the same configuration,
behind a TCP load balancer; nothing else is needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ackhub.core.errors import StartupError
from ackhub.hub.config import Settings
from ackhub.hub.console.metrics import SHARED_METRICS_ENV
from ackhub.hub.store.db import Database

READY_TIMEOUT_S = 60.0  # for a new child to listen
STOP_TIMEOUT_S = 30.0  # for a child to stop cleanly before it is killed
EXIT_STARTUP = 2  # a child's exit code when it cannot start as configured


def check_workers(settings: Settings, workers: int) -> None:
    """What several processes need: a shared database and fixed addresses (StartupError otherwise)."""
    if workers < 1:
        raise StartupError("--workers must be at least 1")
    if workers == 1:
        return
    if settings.server.database_url.startswith("sqlite"):
        raise StartupError(
            f"--workers {workers} needs PostgreSQL: every process must share one database, and SQLite "
            "has one writer. Set [server].database_url to a postgresql:// URL, or run one process."
        )
    for name, listen in (("[server].listen", settings.server.listen),) + (
        (("[console].listen", settings.console.listen),) if settings.console else ()
    ):
        if listen.rpartition(":")[2] == "0":
            raise StartupError(
                f"--workers {workers} needs a fixed port in {name} ({listen!r}): the processes share it"
            )


@dataclass
class Child:
    index: int
    process: subprocess.Popen[bytes]
    ready_file: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def ready(self) -> bool:
        return self.ready_file.exists()


class Supervisor:
    def __init__(self, command: list[str], workers: int) -> None:
        """`command`: how to run one hub process (`ackhub serve …` without `--workers`); the children
        inherit this process's environment."""
        self.command = command
        self.workers = workers
        self.children: dict[int, Child] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="ackhub-workers-"))
        self._metrics = self._dir / "metrics"  # the children's counters and histograms
        self._metrics.mkdir()
        self._stopping = False
        self._rolling = False
        self._failures: dict[int, int] = {}  # quick deaths in a row, per worker index

    def say(self, text: str) -> None:
        print(f"ackhub serve: {text}", file=sys.stderr, flush=True)

    def spawn(self, index: int) -> Child:
        ready = self._dir / f"ready-{index}-{time.monotonic_ns()}"
        process = subprocess.Popen(
            [*self.command, "--ready-file", str(ready)],
            env={**os.environ, SHARED_METRICS_ENV: str(self._metrics)},
        )
        self.say(f"worker {index} started (pid {process.pid})")
        return Child(index, process, ready)

    def wait_ready(self, child: Child) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._stopping:
            if child.ready:
                return True
            if child.process.poll() is not None:
                return False
            time.sleep(0.05)
        return child.ready

    def stop_child(self, child: Child) -> int:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.say(f"worker {child.index} (pid {child.process.pid}) did not stop in time; killed")
                child.process.kill()
                child.process.wait()
        child.ready_file.unlink(missing_ok=True)
        return int(child.process.returncode or 0)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            for index in range(self.workers):
                self.children[index] = child = self.spawn(index)
                if not self.wait_ready(child):
                    code = child.process.poll()
                    self.say(f"worker {index} did not start (exit code {code}); stopping")
                    return EXIT_STARTUP if code == EXIT_STARTUP else 1
            self.say(f"{self.workers} workers serving")
            return self._watch()
        finally:
            for child in self.children.values():
                self.stop_child(child)
            shutil.rmtree(self._dir, ignore_errors=True)  # ready files and metrics, made in __init__
            self.say("stopped")

    def _watch(self) -> int:
        while not self._stopping:
            if self._rolling:
                self._rolling = False
                self._roll()
            for index, child in list(self.children.items()):
                code = child.process.poll()
                if code is None or self._stopping:
                    continue
                if code == EXIT_STARTUP:
                    self.say(f"worker {index} exited with {code}: it cannot start as configured; stopping")
                    return EXIT_STARTUP
                quick = time.monotonic() - child.started < 10
                self._failures[index] = self._failures.get(index, 0) + 1 if quick else 0
                pause = min(0.5 * 2 ** self._failures[index], 30.0)
                self.say(
                    f"worker {index} (pid {child.process.pid}) exited with {code}; restart in {pause:g}s"
                )
                time.sleep(pause)
                self.children[index] = self.spawn(index)
            time.sleep(0.2)
        return 0

    def _roll(self) -> None:
        """Each worker in turn: its replacement first, ready, then the old one stopped."""
        self.say("rolling restart")
        for index, old in list(self.children.items()):
            if self._stopping:
                return
            new = self.spawn(index)
            if not self.wait_ready(new):
                self.say(f"worker {index}'s replacement did not start; keeping the old one")
                self.stop_child(new)
                continue
            self.children[index] = new
            self.stop_child(old)
        self.say("rolling restart done")

    def _on_stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._rolling = True


def run_workers(settings: Settings, command: list[str], workers: int) -> int:
    """Check, prepare the database once, then supervise `workers` children running `command`."""
    check_workers(settings, workers)
    db = Database(settings.server.database_url, threads=1)
    try:
        db.prepare()
    finally:
        db.close()
    return Supervisor(command, workers).run()
