"""The server's surroundings: health checking, reflection, migrations, agency and key registration."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import inspect
from sqlmodel import select

from ackhub.hub.store.db import Database
from ackhub.hub.store.models import AgencyKeyRow, AuditEventRow
from tests.harness import RunningHub, start_hub


def test_health_reports_serving(hub: RunningHub) -> None:
    """The gRPC health service answers SERVING for the server and each ackhub service."""
    stub = health_pb2_grpc.HealthStub(hub.channel)
    for service in ("", "ackhub.v1.ExchangeService", "ackhub.v1.OperationsService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(hub: RunningHub) -> None:
    """Server reflection lists the ackhub services, so grpcurl works without the proto files."""
    stub = reflection_pb2_grpc.ServerReflectionStub(hub.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"ackhub.v1.ExchangeService", "ackhub.v1.OperationsService", "grpc.health.v1.Health"} <= names


def test_migrations_build_every_table(database_url: str) -> None:
    """Alembic's migrations create the schema of the models, and running them again changes nothing."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        with db.engine.connect() as connection:
            drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert drift == [], f"models and migrations differ: {drift}"
        assert "alembic_version" in inspect(db.engine).get_table_names()
    finally:
        db.close()


def test_head_revision_is_alembics_head(database_url: str) -> None:
    """HEAD_REVISION, which lets an up-to-date store start without loading Alembic, is the newest
    migration; a store at it skips the upgrade, a store without the table gets every migration."""
    from alembic.script import ScriptDirectory

    from ackhub.hub.store.db import HEAD_REVISION, MIGRATIONS, alembic_config, stored_revision

    db = Database(database_url)
    try:
        assert ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head() == HEAD_REVISION
        assert stored_revision(db.engine) is None
        db.migrate()
        assert stored_revision(db.engine) == HEAD_REVISION
        assert MIGRATIONS.is_dir()
    finally:
        db.close()


def test_key_removed_from_configuration_is_retired(database_url: str) -> None:
    """Restarting without a key retires it (audited); acknowledgements signed with it are then refused."""
    hub = start_hub(database_url)
    hub.stop()

    def drop_tax_key(config: dict[str, object]) -> None:
        agencies = config["agencies"]
        assert isinstance(agencies, list)
        next(a for a in agencies if a["id"] == "tax")["keys"] = []

    hub = start_hub(database_url, edit=drop_tax_key)
    try:
        with hub.server.db.transaction() as session:
            key = session.exec(select(AgencyKeyRow).where(AgencyKeyRow.agency_id == "tax")).one()
            retired = session.exec(
                select(AuditEventRow).where(AuditEventRow.kind == "agency.key_retired")
            ).all()
        assert key.retired_ms is not None and len(retired) == 1
        assert hub.server.exchange is not None and hub.server.exchange.keys.get("tax", key.key_id) is None
    finally:
        hub.stop()


def test_unknown_method_is_unimplemented(hub: RunningHub) -> None:
    """A method the server does not have is UNIMPLEMENTED, not a crash."""
    call = hub.channel.unary_unary("/ackhub.v1.ExchangeService/Nothing")
    with pytest.raises(grpc.RpcError) as refused:
        call(b"", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
