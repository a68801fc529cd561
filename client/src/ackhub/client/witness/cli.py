"""`ackhub witness serve|check|keygen` (also `python -m witness …`) and the witness's configuration:

    [witness]
    name = "tax.example/witness"        # the key name in its cosignature lines
    key_file = "witness-key.pem"        # Ed25519 private key (PEM PKCS#8, or the hex of its seed)
    state_dir = "var/witness"           # one file per log, replaced atomically; alarms.jsonl
    listen = "127.0.0.1:7700"
    prefix = ""                         # the submission and monitoring prefix of its URLs

    [[logs]]                            # one per log key it trusts (several for a key rotation)
    origin = "customs.example/ackhub"
    key = "customs.example/ackhub+1a2b3c4d+AQ…"   # the hub's verifier key: `ackhub audit key`

A key that is not an Ed25519 signed-note key is refused at start, with the line it is on.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.note import COSIGNATURE_V1, ED25519, NoteError, Signer, Verifier, check_key_name, parse_vkey
from ackhub.client.witness.server import WitnessHTTPServer
from ackhub.client.witness.service import Witness
from ackhub.client.witness.state import StateError, Storage


class WitnessConfigError(Exception):
    pass


@dataclass
class WitnessConfig:
    name: str
    signer: Signer
    state_dir: Path
    listen: tuple[str, int]
    prefix: str
    logs: dict[str, list[Verifier]]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    text = path.read_text().strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(
                f"{path} holds a {type(key).__name__.removesuffix('PrivateKey')} key, not Ed25519"
            )
        return key
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path} is neither a PEM private key nor the hex of an Ed25519 seed") from None
    if len(seed) != 32:
        raise ValueError(f"{path}: an Ed25519 seed is 32 bytes, this one {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _line_of(text: str, needle: str, after: int = 0) -> int:
    """The 1-based number of the first line at or after line `after` that contains `needle` (0: none)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= after and needle in line:
            return number
    return 0


def load_config(path: str | Path, listen: str | None = None) -> WitnessConfig:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise WitnessConfigError(f"{source}: {error}") from None
    section: dict[str, Any] = data.get("witness") or {}
    problems = []
    try:
        name = check_key_name(str(section.get("name", "")))
    except NoteError as error:
        problems.append(f"line {_line_of(text, 'name')}: [witness] name: {error}")
        name = "-"
    key_file = section.get("key_file")
    signer = None
    if not key_file:
        problems.append("[witness] key_file is required (make one with `ackhub witness keygen`)")
    else:
        key_path = Path(key_file) if Path(key_file).is_absolute() else source.parent / key_file
        try:
            signer = Signer(name, load_private_key(key_path), COSIGNATURE_V1)
        except (OSError, ValueError) as error:
            problems.append(f"line {_line_of(text, 'key_file')}: [witness] key_file: {error}")
    state = Path(str(section.get("state_dir", "var/witness")))
    state_dir = state if state.is_absolute() else source.parent / state
    host, _, port = (listen or str(section.get("listen", "127.0.0.1:7700"))).rpartition(":")
    logs: dict[str, list[Verifier]] = {}
    header = 0
    for index, entry in enumerate(data.get("logs") or []):
        header = _line_of(text, "[[logs]]", header + 1)
        where = f"line {header}: [[logs]] #{index + 1}"
        origin, key = str(entry.get("origin", "")), str(entry.get("key", ""))
        try:
            verifier = parse_vkey(key)
        except NoteError as error:
            problems.append(f"{where}: key: {error}")
            continue
        if verifier.kind != ED25519:
            problems.append(f"{where}: key: a log signs with an Ed25519 signed-note key (type 0x01)")
        elif verifier.name != origin:
            problems.append(f"{where}: the key's name {verifier.name!r} is not the origin {origin!r}")
        else:
            logs.setdefault(origin, []).append(verifier)
    if not logs and not problems:
        problems.append("no [[logs]]: name at least one log (origin and key) to witness")
    if not port.isdigit():
        problems.append(f"listen {listen!r} is not host:port")
    if problems or signer is None:
        raise WitnessConfigError(f"{source}: " + "\n  ".join(["refused:", *problems]))
    return WitnessConfig(name, signer, state_dir, (host, int(port)), str(section.get("prefix", "")), logs)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config, args.listen)
        storage = Storage(config.state_dir).open()
    except (WitnessConfigError, StateError) as error:
        print(error, file=sys.stderr)
        return 2
    witness = Witness(config.name, config.signer, config.logs, storage)
    try:
        server = WitnessHTTPServer(config.listen, witness, config.prefix)
    except OSError as error:
        print(f"cannot listen on {config.listen[0]}:{config.listen[1]}: {error}", file=sys.stderr)
        storage.close()
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    # One line a supervisor (or a test) can read: where it listens and the key to trust it by.
    print(
        f"witness {config.name} listening on {config.listen[0]}:{server.port}; "
        f"key {config.signer.verifier.vkey()}",
        flush=True,
    )
    stop.wait()
    server.shutdown()
    server.server_close()
    storage.close()
    return 0


def _check(args: argparse.Namespace) -> int:
    """Exit 0 with each log's state; 1 when an alarm was raised (each printed); 2 when unusable."""
    try:
        config = load_config(args.config)
    except WitnessConfigError as error:
        print(error, file=sys.stderr)
        return 2
    storage = Storage(config.state_dir)
    try:
        for origin in sorted(config.logs):
            stored = storage.load(origin)
            if stored is None:
                print(f"{origin}: nothing cosigned yet")
            elif stored.checkpoint.note.verified_by(config.signer.verifier) is None:
                print(f"ALARM: {origin}: the stored checkpoint is not cosigned by this witness's key")
                return 1
            else:
                print(f"{origin}: cosigned {stored.tree_size} leaves")
        alarms = storage.alarms()
    except StateError as error:
        print(f"ALARM: {error}")
        return 2
    for alarm in alarms:
        print(f"ALARM: {alarm['kind']}: {alarm['origin']}: {alarm['what']}")
    return 1 if alarms else 0


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    out = Path(args.out)
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{out} exists; refusing to overwrite a private key", file=sys.stderr)
        return 1
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    verifier = Signer(check_key_name(args.name), key, COSIGNATURE_V1).verifier
    print(f"private key written to {out} (mode 0600)")
    print(
        f"the witness's verifier key, for the hub's [[audit.witnesses]] and for verifiers:\n{verifier.vkey()}"
    )
    return 0


def add_commands(commands: Any) -> None:
    witness = commands.add_parser("witness", help="a partner agency's witness of the hub's audit log")
    actions = witness.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="run the witness (C2SP tlog-witness over HTTP)")
    serve.add_argument("--config", required=True, help="the witness's TOML configuration")
    serve.add_argument("--listen", help="host:port (overrides [witness] listen; port 0 picks one)")
    serve.set_defaults(run=_serve)
    check = actions.add_parser("check", help="print each log's state; exit 1 if an alarm was raised")
    check.add_argument("--config", required=True)
    check.set_defaults(run=_check)
    keygen = actions.add_parser("keygen", help="make the witness's Ed25519 key; prints its verifier key")
    keygen.add_argument("--name", required=True, help="the witness's key name, e.g. tax.example/witness")
    keygen.add_argument("--out", default="witness-key.pem")
    keygen.set_defaults(run=_keygen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="witness")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["witness", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))
