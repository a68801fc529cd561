"""The partners' client as a partner installs it: its wheels alone in a fresh virtual environment pull in
no server library, and its `ackhub-client` traces a record, downloads its proof and verifies it against a
real hub."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from ackhub.audit.acks import private_key_pem, public_key_base64
from ackhub.core.clock import ManualClock
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import types_pb2
from tests.harness import RunningHub, key_id, private_key, start_hub, wait_for
from tests.test_trace import ALPHA, DECLARATION, _delivered, _publish, _token, _with_tokens

ROOT = Path(__file__).resolve().parents[1]
# What `pip install ackhub-client` may bring: the client, the contract, the audit formats, and gRPC,
# protobuf and cryptography with what they need themselves.
ALLOWED = {
    "ackhub-client",
    "ackhub-proto",
    "ackhub-audit",
    "grpcio",
    "protobuf",
    "googleapis-common-protos",
    "cryptography",
    "cffi",
    "pycparser",
    "typing-extensions",
}


@pytest.fixture(name="client_env", scope="module")
def fixture_client_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheels of ackhub-proto, ackhub-audit and ackhub-client."""
    base = tmp_path_factory.mktemp("client")
    wheels = base / "wheels"
    sources = []
    for name in ("proto", "audit", "client"):  # built from copies: a build writes into its source folder
        shutil.copytree(ROOT / name, base / name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        sources.append(str(base / name))
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels)]
    subprocess.run([*build, *sources], check=True, timeout=300)
    env = base / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*install, *map(str, sorted(wheels.glob("*.whl")))], check=True, timeout=600)
    return env


def _installed(env: Path) -> set[str]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {re.split(r"[=@ ]", line)[0].lower().replace("_", "-") for line in listing.split()}
    return names - {"pip", "setuptools", "wheel"}


@pytest.mark.slow
def test_the_client_installs_without_the_server(client_env: Path) -> None:
    """Nothing of the server (SQLModel, Alembic, psycopg, Starlette, pydantic ...) comes with the client."""
    installed = _installed(client_env)
    assert {"ackhub-client", "ackhub-proto", "ackhub-audit"} <= installed
    assert installed <= ALLOWED, f"the client pulled in {sorted(installed - ALLOWED)}"
    found = subprocess.run(
        [str(client_env / "bin" / "python"), "-c", "import ackhub.client, ackhub.audit.proofs, ackhub.v1"],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    absent = subprocess.run(
        [str(client_env / "bin" / "python"), "-c", "import ackhub.hub"], capture_output=True, text=True
    )
    assert "No module named 'ackhub.hub'" in absent.stderr


@pytest.fixture(name="traced")
def fixture_traced(database_url: str, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=clock, edit=_with_tokens)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.slow
def test_the_client_alone_traces_and_verifies(
    client_env: Path, traced: RunningHub, clock: ManualClock, tmp_path: Path
) -> None:
    """From the fresh environment: `ackhub-client trace`, `proof get` and `proof verify` against a real hub."""
    record_id = _delivered(traced, clock)
    token = _token(clock, ALPHA)[0][1].removeprefix("Bearer ")
    client = str(client_env / "bin" / "ackhub-client")
    options = ["--target", traced.target, "--token", token]

    traced_out = subprocess.run(
        [client, "trace", DECLARATION, *options], capture_output=True, text=True, timeout=60
    )
    assert traced_out.returncode == 0, traced_out.stderr
    assert "(tax): ACCEPTED, closed by ACCEPTED" in traced_out.stdout

    proof = tmp_path / "proof.json"
    got = subprocess.run(
        [client, "proof", "get", record_id, "--out", str(proof), *options], capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    ledger = traced.server.ledger
    assert ledger is not None
    hub_key = public_key_base64(ledger.public_key)
    checked = subprocess.run(
        [client, "proof", "verify", str(proof), "--hub-key", hub_key], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "(tax) accepted record" in checked.stdout and checked.stdout.rstrip().endswith("checks out.")

    proof.write_text(proof.read_text(encoding="utf-8").replace("value mismatch", "value matched"))
    forged = subprocess.run(
        [client, "proof", "verify", str(proof), "--hub-key", hub_key], capture_output=True, text=True
    )
    assert forged.returncode == 1
    assert "✗ fx's REJECTED acknowledgement: the signature does not verify" in forged.stdout


def _imported_libraries(source: Path) -> set[str]:
    """The top-level names a distribution's code imports, other than its own namespace and the stdlib."""
    found: set[str] = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"ackhub", "__future__"}


def _declared(folder: Path) -> set[str]:
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normal(re.split(r"[<>=!\[; ]", requirement)[0]) for requirement in project["dependencies"]}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


@pytest.mark.parametrize("folder", ["proto", "audit", "core", "adapters", "connectors", "client", "hub"])
def test_every_imported_library_is_declared_where_it_is_imported(folder: str) -> None:
    """Each distribution declares every library its code imports (not one that another brings along)."""
    providers = packages_distributions()
    generated = folder == "proto"  # protoc's code imports grpc and google.protobuf
    missing = {
        module: providers.get(module, ["?"])
        for module in _imported_libraries(ROOT / folder / "src")
        if not {_normal(name) for name in providers.get(module, [])} & _declared(ROOT / folder)
    }
    assert not missing or (generated and set(missing) <= {"grpc", "google"}), missing


def test_the_partners_test_agency_acknowledges_what_it_receives(
    traced: RunningHub, clock: ManualClock, tmp_path: Path
) -> None:
    """`ackhub-client test-agency` subscribes as tax with tax's key and answers a delivery RECEIVED then
    ACCEPTED, signed; the hub verifies both and the delivery is ACCEPTED."""
    key_file = tmp_path / "tax.pem"
    key_file.write_text(private_key_pem(private_key("tax")))
    options = ["--agency", "tax", "--key-id", key_id("tax"), "--key-file", str(key_file), "--stop-after", "1"]
    agency = subprocess.Popen(
        [sys.executable, "-m", "ackhub.client.cli", "test-agency", "--target", traced.target, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        record_id = _publish(traced, ALPHA)

        def tax_state() -> int:
            answer = traced.exchange_stub.GetRecord(
                exchange_pb.GetRecordRequest(record_id=record_id), metadata=traced.as_operator()
            )
            return next(d.state for d in answer.deliveries if d.recipient == "tax")

        wait_for(lambda: tax_state() == types_pb2.DELIVERY_STATE_ACCEPTED, what="tax ACCEPTED")
        out, _ = agency.communicate(timeout=30)
        assert agency.returncode == 0
        assert "customs.export_declaration.released → accept" in out
    finally:
        if agency.poll() is None:
            agency.kill()
            agency.communicate()
