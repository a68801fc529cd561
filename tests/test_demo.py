"""`ackhub demo`: its configuration, its simulated declarations, and a short real run in a subprocess."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ackhub.adapters.loader import load
from ackhub.audit.acks import load_public_key, public_key_base64
from ackhub.core.identifiers import check_declaration_number, check_hs_code, check_uscc
from ackhub.hub.cli import main
from ackhub.hub.config import load_settings
from ackhub.hub.demo import (
    DEMO_CONFIG,
    ENTERPRISES,
    Declarations,
    demo_key_id,
    demo_private_key,
    fresh_sqlite_file,
)
from ackhub.hub.exchange.catalogue import build

ROOT = Path(__file__).resolve().parent.parent
STATUS_LINE = re.compile(
    r"^\[\s*\d+s\] published \d+ \| deliveries PENDING \d+ SENT \d+ .*\| gRPC 127\.0\.0\.1:\d+$"
)


def test_demo_config_keys_are_the_demo_agencies_keys() -> None:
    """examples/demo.toml registers, for each agency, the public half of the key the demo signs with."""
    settings = load_settings(DEMO_CONFIG, environ={})
    assert [a.id for a in settings.agencies] == ["customs", "tax", "fx"]
    for agency in settings.agencies:
        (key,) = agency.keys
        assert key.id == demo_key_id(agency.id)
        expected = public_key_base64(demo_private_key(agency.id).public_key())
        assert public_key_base64(load_public_key(key.public_key)) == expected
    token_key = settings.auth.enterprise_jwt_public_key
    assert token_key == public_key_base64(demo_private_key("token-issuer").public_key())


def test_demo_config_passes_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    """`ackhub config check examples/demo.toml` accepts the demo configuration."""
    assert main(["config", "check", str(DEMO_CONFIG)]) == 0
    assert "OK" in capsys.readouterr().out


def test_simulated_declarations_carry_valid_identifiers() -> None:
    """Every exporter's USCC, every declaration number and every HS code the demo publishes is valid, and
    every declaration matches its type's schema in the catalogue."""
    schema = build(load()).current("customs.export_declaration.released")
    assert schema is not None
    assert all(check_uscc(e.uscc) is None for e in ENTERPRISES)
    declarations = Declarations(random.Random(7))
    for _ in range(50):
        exporter, number, payload = declarations.next()
        document = json.loads(payload)
        assert check_declaration_number(number) is None and number[8] == "0"  # an export
        assert document["declaration_number"] == number
        assert document["exporter"]["uscc"] == exporter.uscc
        assert all(check_hs_code(line["hs_code"]) is None for line in document["goods"])
        total = sum(float(line["fob_value_usd"]) for line in document["goods"])
        assert abs(float(document["fob_value_usd"]) - total) < 0.01
        assert schema.violations(payload) == []


def test_demo_runs_publishes_and_gets_acknowledgements(tmp_path: Path) -> None:
    """An 8-second demo exits 0, prints a status line a second, leaves records and ACCEPTED deliveries, and
    its console lets the printed operator token sign in."""
    database = tmp_path / "demo.db"
    command = [sys.executable, "-m", "ackhub.hub.cli", "demo", "--duration", "8"]
    command += ["--listen", "127.0.0.1:0", "--database-url", f"sqlite:///{database}"]
    command += ["--console-listen", "127.0.0.1:0"]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        seen: list[str] = []
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("console: "):
                break
        url = seen[-1].split()[1]
        token = process.stdout.readline().strip()
        seen.append(token)
        with httpx.Client(base_url=url, timeout=10) as console:
            signed_in = console.post("/signin", data={"token": token, "next": "/"})
            assert signed_in.status_code == 303, signed_in.text
            assert "operator:demo-operator" in console.get("/").text
        out, err = process.communicate(timeout=60)
    run = subprocess.CompletedProcess(command, process.returncode, "\n".join(seen) + "\n" + out, err)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    log_file = tmp_path / "demo.db.log"
    assert str(log_file) in lines[0]  # says at once where the logs are
    assert len([line for line in lines if STATUS_LINE.match(line)]) >= 6, run.stdout
    assert lines[-1].startswith("stopped after")

    with sqlite3.connect(database) as db:
        records = db.execute("SELECT subject_uscc, declaration_number FROM records").fetchall()
        accepted = db.execute(
            "SELECT count(*) FROM deliveries WHERE recipient = 'tax' AND state = 'ACCEPTED'"
        ).fetchone()[0]
        recipients = {r for (r,) in db.execute("SELECT DISTINCT recipient FROM deliveries")}
    assert len(records) >= 5
    assert all(check_uscc(u) is None and check_declaration_number(n) is None for u, n in records)
    assert accepted >= 1
    assert recipients == {"tax", "fx"}

    # Structured JSON, one object a line, the standard library's loggers (grpc, alembic, ...) included.
    log_lines = log_file.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in log_lines]
    names = {event["event"] for event in events}
    assert {"hub.started", "record.published", "delivery.acknowledged", "hub.stopped"} <= names


def test_demo_refuses_a_database_file_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ackhub demo --database-url sqlite:///FILE` with someone's FILE: refused, naming it, and FILE is left
    exactly as it was; a file the demo made itself is started afresh."""
    mine = tmp_path / "mine.db"
    mine.write_bytes(b"my own data")
    (tmp_path / "mine.db-wal").write_bytes(b"my own wal")
    code = main(["demo", "--duration", "1", "--database-url", f"sqlite:///{mine}", "--listen", "127.0.0.1:0"])
    assert code != 0
    assert str(mine) in capsys.readouterr().err
    assert mine.read_bytes() == b"my own data" and (tmp_path / "mine.db-wal").read_bytes() == b"my own wal"

    made = tmp_path / "demo" / "made.db"
    assert fresh_sqlite_file(f"sqlite:///{made}") == made
    made.write_bytes(b"an earlier demo's database")
    assert fresh_sqlite_file(f"sqlite:///{made}") == made  # its own: deleted, started afresh
    assert not made.exists()
