"""The witness (`ackhub witness serve`) in a process of its own, spoken to over HTTP as C2SP tlog-witness
says: it cosigns what is consistent with the last checkpoint it cosigned, answers each protocol code, keeps
its state across SIGKILL, changes nothing on bad input, and raises alarms on forks, rewrites and rollbacks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit import merkle
from ackhub.audit.note import ED25519, Signer, parse_checkpoint, parse_note
from ackhub.core.errors import ConfigError
from tests.witness_kit import WitnessProcess, run_witness

ORIGIN = "customs.example/ackhub"
LOG = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"L" * 32), ED25519)


def _tree(size: int, fork_at: int | None = None) -> merkle.Tree:
    return merkle.Tree(
        merkle.leaf_hash(f"event {i}{' forged' if fork_at is not None and i >= fork_at else ''}".encode())
        for i in range(size)
    )


def _checkpoint(tree: merkle.Tree, size: int, signer: Signer = LOG) -> str:
    text = f"{signer.name}\n{size}\n{base64.b64encode(tree.root(size)).decode()}\n".encode()
    return text.decode() + "\n" + signer.sign(text)


def _request(tree: merkle.Tree, old: int, size: int, signer: Signer = LOG) -> bytes:
    proof = tree.consistency(old, size) if 0 < old < size else []
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return (f"old {old}\n{lines}\n" + _checkpoint(tree, size, signer)).encode()


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[WitnessProcess]:
    process = WitnessProcess(tmp_path / "w1", "tax.example/witness", [LOG.verifier]).start()
    yield process
    process.stop()


def _add(witness: WitnessProcess, body: bytes) -> httpx.Response:
    return httpx.post(f"{witness.url}/add-checkpoint", content=body, timeout=10)


def _state(witness: WitnessProcess) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (witness.dir / "state").glob("*") if p.name != ".lock"}


def test_cosigns_a_consistent_history_and_serves_it(witness: WitnessProcess) -> None:
    """The first checkpoint (old 0) and each consistent extension get a cosignature by the witness's key;
    the monitoring endpoint serves the last one with the log's signature and the cosignature."""
    tree = _tree(20)
    for old, size in ((0, 5), (5, 13), (13, 20)):
        answer = _add(witness, _request(tree, old, size))
        assert answer.status_code == 200, answer.text
        note = parse_note(_checkpoint(tree, size) + answer.text)
        assert note.verified_by(witness.signer.verifier) is not None
    served = httpx.get(f"{witness.url}/checkpoint", params={"origin": ORIGIN}, timeout=10)
    checkpoint = parse_checkpoint(served.text)
    assert checkpoint.body.tree_size == 20 and checkpoint.body.root_hash == tree.root(20)
    assert checkpoint.note.verified_by(LOG.verifier) == 0
    assert checkpoint.note.verified_by(witness.signer.verifier) is not None
    assert witness.check().returncode == 0


def test_a_wrong_old_size_is_409_with_the_size_it_knows(witness: WitnessProcess) -> None:
    """409 Conflict, Content-Type text/x.tlog.size, body the size of the last cosigned checkpoint."""
    tree = _tree(9)
    assert _add(witness, _request(tree, 0, 6)).status_code == 200
    answer = _add(witness, _request(tree, 0, 9))
    assert (answer.status_code, answer.headers["content-type"], answer.text) == (
        409,
        "text/x.tlog.size",
        "6\n",
    )
    assert witness.check().returncode == 0  # a client that did not know the size is no alarm


def test_a_rewritten_history_is_422_and_an_alarm(witness: WitnessProcess) -> None:
    """A log whose leaf 3 changed (re-signed by its own key) cannot prove consistency: 422, state kept,
    an alarm in the check command, the metric and the log."""
    honest, forged = _tree(8), _tree(12, fork_at=3)
    assert _add(witness, _request(honest, 0, 8)).status_code == 200
    before = _state(witness)
    answer = _add(witness, _request(forged, 8, 12))
    assert answer.status_code == 422, answer.text
    assert {k: v for k, v in _state(witness).items() if k != "alarms.jsonl"} == before
    check = witness.check()
    assert check.returncode == 1 and "ALARM: inconsistent: customs.example/ackhub" in check.stdout, (
        check.stdout
    )
    assert "ackhub_witness_alarms_total 1" in httpx.get(f"{witness.url}/metrics", timeout=10).text
    assert "witness.alarm kind=inconsistent" in witness.stderr()


def test_two_trees_of_one_size_are_409_and_an_alarm(witness: WitnessProcess) -> None:
    """The same size with another root is a fork: 409 with the size, and an alarm."""
    assert _add(witness, _request(_tree(8), 0, 8)).status_code == 200
    answer = _add(witness, _request(_tree(8, fork_at=7), 8, 8))
    assert (answer.status_code, answer.text) == (409, "8\n")
    check = witness.check()
    assert check.returncode == 1 and "ALARM: fork" in check.stdout


def test_a_smaller_tree_presented_as_the_newest_is_400_and_an_alarm(witness: WitnessProcess) -> None:
    """A log that lost its tail shows a signed checkpoint smaller than the one cosigned: refused, alarm."""
    tree = _tree(10)
    assert _add(witness, _request(tree, 0, 10)).status_code == 200
    answer = _add(witness, f"old 10\n\n{_checkpoint(tree, 4)}".encode())
    assert answer.status_code == 400
    check = witness.check()
    assert (
        check.returncode == 1
        and "ALARM: rollback" in check.stdout
        and "leaves from 4 on are gone" in check.stdout
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"garbage", 400),
        (b"old 01\n\n" + _checkpoint(_tree(4), 4).encode(), 400),
        (b"old 2\nnot-a-hash\n\n" + _checkpoint(_tree(4), 4).encode(), 400),
        (b"old 4\n\n" + _checkpoint(_tree(4), 4).encode()[:-30] + b"\n", 400),
        (b"old 0\n\n" + _checkpoint(_tree(4), 4, Signer("other.example/log", LOG.private_key)).encode(), 404),
        (
            b"old 0\n\n"
            + _checkpoint(
                _tree(4), 4, Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"M" * 32))
            ).encode(),
            403,
        ),
    ],
    ids=[
        "garbage",
        "leading-zero",
        "bad-proof-line",
        "truncated-signature",
        "unknown-origin",
        "untrusted-key",
    ],
)
def test_bad_input_is_a_4xx_and_changes_nothing(witness: WitnessProcess, body: bytes, status: int) -> None:
    """Malformed requests, unknown logs and untrusted signatures: the protocol's 4xx, state untouched."""
    assert _add(witness, _request(_tree(4), 0, 4)).status_code == 200
    before = _state(witness)
    assert _add(witness, body).status_code == status
    assert _state(witness) == before
    assert witness.check().returncode == 0


def test_a_killed_witness_restarts_with_its_state(witness: WitnessProcess) -> None:
    """SIGKILL after a cosignature, start again on the same directory: it still holds that size."""
    tree = _tree(7)
    assert _add(witness, _request(tree, 0, 7)).status_code == 200
    witness.kill()
    witness.start()
    answer = _add(witness, _request(tree, 0, 7))
    assert (answer.status_code, answer.text) == (409, "7\n")
    assert _add(witness, _request(_tree(9), 7, 9)).status_code == 200


def test_one_process_per_state_directory(witness: WitnessProcess) -> None:
    """A second witness on the same state directory refuses to start."""
    second = run_witness("serve", "--config", str(witness.config))
    assert second.returncode == 2 and "another witness process holds" in second.stderr


def test_a_log_key_that_is_not_ed25519_is_refused_naming_the_line(tmp_path: Path) -> None:
    """The witness refuses to start on a [[logs]] key of another type, naming its line."""
    process = WitnessProcess(tmp_path / "w", "w.example/w", [LOG.verifier])
    text = process.config.read_text()
    ecdsa = f"{ORIGIN}+00000000+" + base64.b64encode(b"\2" + b"\0" * 32).decode()
    process.config.write_text(text.replace(LOG.verifier.vkey(), ecdsa))
    line = next(n for n, t in enumerate(process.config.read_text().splitlines(), 1) if t == "[[logs]]")
    refused = run_witness("serve", "--config", str(process.config))
    assert refused.returncode == 2
    assert (
        f"line {line}: [[logs]] #1: key: the verifier key is of type 0x02, not an Ed25519 key"
        in refused.stderr
    )


def test_the_hub_refuses_bad_witness_configuration_naming_the_line(tmp_path: Path) -> None:
    """A duplicated witness name, or a witness key that is not an Ed25519 cosignature key, stops the hub's
    configuration with the line of the table."""
    from ackhub.hub.config import load_settings

    w = WitnessProcess(tmp_path / "w", "tax.example/witness", [LOG.verifier])
    table = (
        f'[[audit.witnesses]]\nname = "tax.example/witness"\nurl = "http://127.0.0.1:1"\nkey = "{w.vkey}"\n'
    )
    config = tmp_path / "hub.toml"
    config.write_text(f'[server]\ndatabase_url = "sqlite://"\n\n{table}\n{table}')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "audit.witnesses (line 10): witness name 'tax.example/witness' appears twice" in str(refused.value)
    config.write_text(f'[server]\ndatabase_url = "sqlite://"\n\n{table.replace(w.vkey, LOG.verifier.vkey())}')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "audit.witnesses[0] (line 4)" in str(refused.value)
    assert "not an Ed25519 cosignature/v1 key (type 0x04)" in str(refused.value)


def test_the_witness_needs_nothing_of_the_hub() -> None:
    """Importing and running the witness loads no module of the hub or its store: it ships in the client."""
    import subprocess
    import sys

    from tests.witness_kit import REPO

    probe = (
        "import sys, ackhub.client.witness.cli, ackhub.client.witness.server, ackhub.client.witness.service, "
        "ackhub.client.witness.state; ours = {'.'.join(m.split('.')[:2]) for m in sys.modules}; "
        "print(sorted((ours | {m.split('.')[0] for m in sys.modules}) "
        "& {'ackhub.hub', 'ackhub.core', 'ackhub.adapters', 'ackhub.connectors', 'sqlmodel', 'sqlalchemy'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_a_damaged_state_file_stops_cosigning(witness: WitnessProcess) -> None:
    """A state file that no longer parses: 500 and nothing cosigned, and the check command says so."""
    assert _add(witness, _request(_tree(4), 0, 4)).status_code == 200
    (state,) = (witness.dir / "state").glob("log-*.checkpoint")
    state.write_text("garbage\n")
    assert _add(witness, _request(_tree(6), 4, 6)).status_code == 500
    check = witness.check()
    assert check.returncode == 2 and "is damaged" in check.stdout, check.stdout
