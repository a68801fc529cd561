"""Witnesses for tests: `ackhub witness serve` as a real subprocess with its own state directory (started,
SIGKILLed, restarted on the same state), and the configuration it reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.note import COSIGNATURE_V1, Signer, Verifier

REPO = Path(__file__).resolve().parent.parent


def witness_key(name: str) -> Ed25519PrivateKey:
    """Deterministic per witness name."""
    return Ed25519PrivateKey.from_private_bytes(name.encode().ljust(32, b"\0")[:32])


def write_config(directory: Path, name: str, logs: list[Verifier]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "witness-key.pem"
    if not key_file.exists():
        key_file.write_bytes(
            witness_key(name).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    lines = [
        "[witness]",
        f"name = {json.dumps(name)}",
        'key_file = "witness-key.pem"',
        'state_dir = "state"',
        'listen = "127.0.0.1:0"',
    ]
    for log in logs:
        lines += ["", "[[logs]]", f"origin = {json.dumps(log.name)}", f"key = {json.dumps(log.vkey())}"]
    config = directory / "witness.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


class WitnessProcess:
    """One witness in a process of its own; `url` is its submission (and monitoring) prefix."""

    def __init__(self, directory: Path, name: str, logs: list[Verifier]) -> None:
        self.dir = directory
        self.name = name
        self.config = write_config(directory, name, logs)
        self.signer = Signer(name, witness_key(name), COSIGNATURE_V1)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey()

    def start(self) -> WitnessProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ackhub.client.witness", "serve", "--config", str(self.config)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(self.dir / "stderr.log", "a"),  # noqa: SIM115 - lives as long as the process
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed once it listens
        assert " listening on " in line, f"the witness did not start: {line!r}, {self.stderr()}"
        address = line.split(" listening on ")[1].split(";")[0]
        assert line.rstrip().endswith(self.vkey), line
        self.url = f"http://{address}"
        return self

    def stderr(self) -> str:
        path = self.dir / "stderr.log"
        return path.read_text() if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def check(self) -> subprocess.CompletedProcess[str]:
        return run_witness("check", "--config", str(self.config))


def run_witness(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m witness ARGS` to its end (for commands that exit: check, or serve refusing to start)."""
    return subprocess.run(
        [sys.executable, "-m", "ackhub.client.witness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
