"""Configuration: the TOML schema, cross-references, environment overrides and `ackhub config check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ackhub.core.errors import ConfigError
from ackhub.hub.config import load_settings, parse_settings
from tests.harness import base_config

GOOD = """
[server]
listen = "127.0.0.1:7443"
database_url = "sqlite:///var/hub.db"

[[agencies]]
id = "customs"
name = "General Administration of Customs"
kind = "customs"

[[agencies]]
id = "tax"
name = "State Taxation Administration"
kind = "tax"
[[agencies.keys]]
id = "tax-2026-01"
public_key = "D+xLigvrjwtNEVCDL2Efwfmdyi/2g5uOfTHoc1SVVY0="

[[routes]]
record_type = "customs.export_declaration.released"
publishers = ["customs"]
[[routes.recipients]]
agency = "tax"
ack_level = "BUSINESS"
deadline = "10m"
retry = { first_interval = "5s", multiplier = 2.0, max_interval = "5m", jitter = 0.1, max_attempts = 8 }
escalation = [{ after = "0s", notify = ["log"] }, { after = "30m", notify = ["log"] }]
"""

BAD = """
[server]
stream_window = 0

[audit]
sequence_interval = "0s"

[[agencies]]
id = "Tax Bureau"
name = "x"
kind = "tax"
[[agencies.keys]]
id = "k1"
public_key = "not a key"

[[agencies]]
id = "fx"
name = "SAFE"
kind = "forex"

[[routes]]
record_type = "customs.export_declaration.released"
publishers = ["customs"]
[[routes.recipients]]
agency = "tax"
deadline = "10 minutes"
retry = { first_interval = "10s", max_interval = "1s" }
escalation = [{ after = "0s", notify = ["pager"] }]
"""


def test_good_file_loads_with_durations_in_ms(tmp_path: Path) -> None:
    """Durations written as text become milliseconds; defaults fill what is not written."""
    path = tmp_path / "hub.toml"
    path.write_text(GOOD)
    settings = load_settings(path, environ={})
    recipient = settings.routes[0].recipients[0]
    assert (recipient.deadline, recipient.retry.first_interval, recipient.retry.max_interval) == (
        600_000,
        5_000,
        300_000,
    )
    assert [step.after for step in recipient.escalation] == [0, 1_800_000]
    assert settings.server.stream_window == 64
    assert settings.audit.sequence_interval == 100


def test_environment_overrides_server_settings(tmp_path: Path) -> None:
    """ACKHUB_DATABASE_URL, ACKHUB_LISTEN and ACKHUB_AUTH override the file."""
    path = tmp_path / "hub.toml"
    path.write_text(GOOD)
    environ = {
        "ACKHUB_DATABASE_URL": "postgresql://db/hub",
        "ACKHUB_LISTEN": "0.0.0.0:1",
        "ACKHUB_AUTH": "secure",
    }
    settings = load_settings(path, environ=environ)
    assert (settings.server.database_url, settings.server.listen) == ("postgresql://db/hub", "0.0.0.0:1")


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    """A bad file yields one line per problem, each naming the key and why."""
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    where = dict(error.value.problems)
    assert "server.stream_window" in where
    assert "more than 0" in where["audit.sequence_interval"]
    assert "pattern" in where["agencies[0].id"]
    assert "Ed25519" in where["agencies[0].keys[0].public_key"]
    assert "agencies[1].kind" in where
    assert "is not a duration" in where["routes[0].recipients[0].deadline"]
    assert "max_interval" in where["routes[0].recipients[0].retry"]


def test_cross_references_are_checked() -> None:
    """Unknown agencies, unknown notifiers and duplicates are each reported."""
    config = base_config("sqlite://")
    config["agencies"].append(dict(config["agencies"][0]))
    route = config["routes"][0]
    route["publishers"] = ["nobody"]
    route["recipients"][0]["agency"] = "ghost"
    route["recipients"][1]["escalation"] = [{"after": "0s", "notify": ["pager"]}]
    config["routes"].append(dict(route))
    with pytest.raises(ConfigError) as error:
        parse_settings(config, "x.toml", {})
    where = dict(error.value.problems)
    assert "defined twice" in where["agencies[4].id"]
    assert "unknown agency 'nobody'" in where["routes[0].publishers[0]"]
    assert "unknown agency 'ghost'" in where["routes[0].recipients[0].agency"]
    assert "unknown notifier 'pager'" in where["routes[0].recipients[1].escalation[0].notify[0]"]
    assert "two routes" in where["routes[1].record_type"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ackhub.hub.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_config_check_command(tmp_path: Path) -> None:
    """`ackhub config check` exits 0 with a summary for a good file, 1 with file: key: why lines for a bad one."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    ok = _cli("config", "check", str(good))
    assert ok.returncode == 0 and "2 agencies (1 keys), 1 routes" in ok.stdout
    failed = _cli("config", "check", str(bad))
    assert failed.returncode == 1
    assert f"{bad}: routes[0].recipients[0].deadline: '10 minutes' is not a duration" in failed.stderr
    missing = _cli("config", "check", str(tmp_path / "none.toml"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    assert "(syntax)" in _cli("config", "check", str(broken)).stderr


def test_help_explains_the_commands() -> None:
    """`ackhub --help` names every command with a sentence and shows examples."""
    result = _cli("--help")
    assert result.returncode == 0
    for words in ("serve", "config", "keys", "demo", "examples:"):
        assert words in result.stdout


def test_keys_generate_writes_a_private_key_0600(tmp_path: Path) -> None:
    """`ackhub keys generate` writes the private key with mode 0600 and prints the config snippet."""
    result = _cli("keys", "generate", "tax", "--key-id", "tax-k9", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    key = tmp_path / "tax-k9.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert 'id = "tax-k9"' in result.stdout and "public_key" in result.stdout
    again = _cli("keys", "generate", "tax", "--key-id", "tax-k9", "--out", str(tmp_path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
