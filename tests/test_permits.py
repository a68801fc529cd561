"""PermitService over real gRPC on SQLite and PostgreSQL: registration, verification with every reason,
whole declarations, amendments, revocation, draw-down and release with usage records to the issuer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlmodel import select

from ackhub.client.agency import Verdict
from ackhub.core.clock import ManualClock
from ackhub.core.permit_document import PermitLine
from ackhub.hub.store.models import AuditEventRow, PermitCheckRow
from ackhub.v1 import exchange_service_pb2 as ex_pb
from ackhub.v1 import permit_service_pb2 as pb
from ackhub.v1 import permit_service_pb2_grpc as pb_grpc
from tests.harness import Inbox, RunningHub, error_details, start_hub, table_counts, wait_for
from tests.permit_data import (
    DECLARATION,
    FOREIGN_NEW_KEY,
    FOREIGN_OLD_KEY,
    HOLDER,
    NOW_MS,
    OFFICE,
    OTHER_HOLDER,
    certificate,
    create_request,
    draw_request,
    goods,
    licence,
    permit_config,
    reasons,
    signed,
    verify_request,
)

CUSTOMS = (("x-ackhub-agency", "customs"),)
COMMERCE = (("x-ackhub-agency", "commerce"),)


@pytest.fixture(name="permit_hub")
def fixture_permit_hub(database_url: str) -> Iterator[RunningHub]:
    running = start_hub(database_url, clock=ManualClock(NOW_MS), edit=permit_config)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(name="sqlite_permit_hub")
def fixture_sqlite_permit_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """For checks of input alone, which do not depend on the database: SQLite only, to keep tests fast."""
    running = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=ManualClock(NOW_MS), edit=permit_config)
    try:
        yield running
    finally:
        running.stop()


def stub(hub: RunningHub) -> pb_grpc.PermitServiceStub:
    return pb_grpc.PermitServiceStub(hub.channel)


def verify(hub: RunningHub, request: pb.VerifyPermitRequest) -> pb.LineResult:
    result: pb.LineResult = stub(hub).VerifyPermit(request, metadata=CUSTOMS).result
    return result


def test_created_licence_verifies_valid_and_is_recorded(permit_hub: RunningHub) -> None:
    """A signed licence registers; a covered goods line verifies VALID, stored with who asked and audited."""
    created = stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    assert not created.replayed and created.permit.current.content.number == "26-AA-204966"
    assert created.permit.max_uses == 12 and created.permit.state == pb.PERMIT_STATE_ACTIVE
    result = verify(permit_hub, verify_request())
    assert result.verdict == pb.VERDICT_VALID and list(result.reasons) == []
    assert (result.permit_line_number, result.remaining, result.uses_left) == (1, "100", 12)
    with permit_hub.server.db.transaction() as session:
        check = session.exec(select(PermitCheckRow).where(PermitCheckRow.id == result.check_id)).one()
        events = session.exec(select(AuditEventRow).where(AuditEventRow.kind == "permit.verified")).all()
    assert (check.actor, check.verdict, check.quantity_milli) == ("agency:customs", "VALID", 10_000)
    assert len(events) == 1 and json.loads(events[0].data)["first_check"] == result.check_id


def test_create_is_idempotent_and_other_content_is_already_exists(permit_hub: RunningHub) -> None:
    """The same signed licence again is a replay storing nothing; other content under its number is refused."""
    request = create_request(licence())
    stub(permit_hub).CreatePermit(request, metadata=COMMERCE)
    before = table_counts(permit_hub)
    again = stub(permit_hub).CreatePermit(request, metadata=COMMERCE)
    assert again.replayed and table_counts(permit_hub) == before
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).CreatePermit(create_request(licence(multi_batch=False)), metadata=COMMERCE)
    assert error_details(refused.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "PERMIT_EXISTS")
    assert table_counts(permit_hub) == before


@pytest.mark.parametrize(
    ("document", "signer", "field", "words"),
    [
        (licence(number="26-AA-20496"), None, "permit.content.number", "26-AA-204966"),
        (licence(number="25-AA-204966"), None, "permit.content.number", "year of issue: 26"),
        (licence(holder_uscc="91310115MA1G4L1WXK"), None, "permit.content.holder_uscc", "should be '7'"),
        (licence(customs_office=""), None, "permit.content.customs_office", "one customs office"),
        (licence(valid_to=date(2027, 1, 31)), None, "permit.content.valid_to", "2026-12-31"),
        (
            licence(kind="commerce.automatic_import_licence", valid_to=date(2026, 7, 5)),
            None,
            "permit.content.valid_to",
            "2026-07-04",
        ),
        (licence(kind="commerce.permit_to_fly"), None, "permit.content.kind", "unknown permit kind"),
        (licence(issuer="mofcom-x"), None, "permit.content.issuer", "unknown issuer"),
        (
            licence(lines=(PermitLine(1, "8703234", 1000, "辆"),)),
            None,
            "permit.content.lines[0].hs_code",
            "6, 8, 10 or 13 digits",
        ),
        (licence(lines=(PermitLine(1, "87032342", 0, "辆"),)), None, "permit.content.lines[0].quantity", "more than 0"),
        (licence(), "tax", "permit.signature", "does not verify"),
        (certificate(lines=(PermitLine(1, "61091000", 1000, "件", origin_criterion="CTH"),)), None,
         "permit.content.lines[0].hs_code", "6-digit"),
        (certificate(lines=(PermitLine(1, "610910", 1000, "件", origin_criterion="XX"),)), None,
         "permit.content.lines[0].origin_criterion", "CTSH"),
        (certificate(valid_to=date(2027, 6, 1)), None, "permit.content.valid_to", "2027-05-31"),
        (certificate(lines=tuple(PermitLine(i, "610910", 1000, "件", origin_criterion="WO") for i in range(1, 22))),
         None, "permit.content.lines", "at most 20"),
        (certificate(invoice_number=""), None, "permit.content.invoice_number", "required"),
    ],
)  # fmt: skip
def test_bad_permit_is_invalid_argument_and_changes_nothing(
    sqlite_permit_hub: RunningHub, document: Any, signer: str | None, field: str, words: str
) -> None:
    """Each malformed permit or wrong signature names the field and why, and stores nothing."""
    before = table_counts(sqlite_permit_hub)
    request = pb.CreatePermitRequest(permit=signed(document, signer=signer))
    if signer:  # signed by another agency's key but claiming the issuer's key id
        request.permit.key_id = f"{document.issuer}-test-1"
    agency = (("x-ackhub-agency", document.issuer if document.issuer != "mofcom-x" else "commerce"),)
    with pytest.raises(grpc.RpcError) as refused:
        stub(sqlite_permit_hub).CreatePermit(request, metadata=agency)
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in fields, fields
    assert words in fields[field]
    assert table_counts(sqlite_permit_hub) == before


def test_only_the_issuers_agency_registers_its_permits(permit_hub: RunningHub) -> None:
    """Another agency cannot register a commerce licence, even with a valid signature."""
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).CreatePermit(create_request(licence()), metadata=CUSTOMS)
    assert error_details(refused.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ISSUER_AGENCY")


REASON_CASES: list[tuple[dict[str, str], pb.GoodsLine, list[str]]] = [
    ({"declarant_uscc": OTHER_HOLDER}, goods(), ["HOLDER_MISMATCH"]),
    ({"customs_office": "2244"}, goods(), ["WRONG_CUSTOMS_OFFICE"]),
    ({"date": "2026-01-04"}, goods(), ["NOT_YET_VALID"]),
    ({"date": "2027-01-01"}, goods(), ["EXPIRED"]),
    ({}, goods(hs="8704100000"), ["GOODS_NOT_COVERED"]),
    ({}, goods(unit="千克"), ["UNIT_MISMATCH"]),
    ({}, goods(quantity="100.001"), ["QUANTITY_EXCEEDED"]),
    ({}, goods(hs="2601110000", quantity="525", unit="吨"), []),  # bulk: 5 % over is allowed
    ({}, goods(hs="2601110000", quantity="525.001", unit="吨"), ["QUANTITY_EXCEEDED"]),
    ({}, goods(number="26-AA-999999"), ["NOT_FOUND"]),
    (
        {"declarant_uscc": OTHER_HOLDER, "customs_office": "2244", "date": "2027-02-01"},
        goods(hs="8704100000"),
        ["HOLDER_MISMATCH", "WRONG_CUSTOMS_OFFICE", "EXPIRED", "GOODS_NOT_COVERED"],
    ),
]


def test_verification_reasons(permit_hub: RunningHub) -> None:
    """Well-formed lines that the licence does not cover get every precise reason, each with a sentence."""
    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    for changes, line, expected in REASON_CASES:
        result = verify(permit_hub, verify_request(line, **changes))
        assert reasons(result) == expected, (changes, line)
        assert result.verdict == (pb.VERDICT_INVALID if expected else pb.VERDICT_VALID)
        assert len(result.details) == len(expected) and all(result.details)


@pytest.mark.parametrize(
    ("changes", "line", "field", "words"),
    [
        ({"declarant_uscc": "91310115MA1G4L1WXK"}, goods(), "declarant_uscc", "should be '7'"),
        ({"customs_office": "22"}, goods(), "customs_office", "4 digits"),
        ({"date": "15/06/2026"}, goods(), "date", "YYYY-MM-DD"),
        ({}, goods(hs="87032"), "line.hs_code", "6, 8, 10 or 13 digits"),
        ({}, goods(quantity="-1"), "line.quantity", "more than 0"),
        ({}, goods(quantity="0"), "line.quantity", "more than 0"),
        ({}, goods(quantity="1.2345"), "line.quantity", "at most 3 decimals"),
        ({}, goods(kind="commerce.fishing_licence"), "line.permit_kind", "unknown permit kind"),
        ({"declaration_number": "0202202615256416"}, goods(), "declaration_number", "18 digits"),
    ],
)
def test_bad_verification_input_is_invalid_argument(
    sqlite_permit_hub: RunningHub, changes: dict[str, str], line: pb.GoodsLine, field: str, words: str
) -> None:
    """Malformed verification requests are INVALID_ARGUMENT naming the field, and record nothing."""
    stub(sqlite_permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    before = table_counts(sqlite_permit_hub)
    with pytest.raises(grpc.RpcError) as refused:
        verify(sqlite_permit_hub, verify_request(line, **changes))
    code, _, _, fields = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in fields[field], fields
    assert table_counts(sqlite_permit_hub) == before


def test_verify_declaration_checks_every_line_and_adds_quantities_up(permit_hub: RunningHub) -> None:
    """300 goods lines in one call (no 50-line limit), each with its own result; lines on the same permit
    line share its quantity, so the one that would overdraw is QUANTITY_EXCEEDED."""
    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    lines = [goods(hs="2601110000", quantity="1", unit="吨", item=i) for i in range(1, 301)]
    lines[7] = goods(hs="8704100000", item=8)
    request = pb.VerifyDeclarationRequest(
        declarant_uscc=HOLDER,
        customs_office=OFFICE,
        date="2026-06-15",
        declaration_number=DECLARATION,
        lines=lines,
    )
    answer = stub(permit_hub).VerifyDeclaration(request, metadata=CUSTOMS)
    assert answer.verdict == pb.VERDICT_INVALID and len(answer.results) == 300
    assert reasons(answer.results[7]) == ["GOODS_NOT_COVERED"]
    assert all(r.verdict == pb.VERDICT_VALID for i, r in enumerate(answer.results) if i != 7)
    # 525 t allowed (500 t + 5 %): 299 lines of 1 t fit, a 227 t line on top does not.
    lines = [goods(hs="2601110000", quantity="300", unit="吨", item=1), goods(hs="2601110000", quantity="226",
             unit="吨", item=2)]  # fmt: skip
    request = pb.VerifyDeclarationRequest(declarant_uscc=HOLDER, customs_office=OFFICE, lines=lines)
    answer = stub(permit_hub).VerifyDeclaration(request, metadata=CUSTOMS)
    assert [reasons(r) for r in answer.results] == [[], ["QUANTITY_EXCEEDED"]]
    assert answer.results[1].remaining == "225"


def test_amend_keeps_history_and_revoke_answers_revoked(permit_hub: RunningHub) -> None:
    """An amendment is version 2 with version 1 kept; a wrong version is refused; a revoked licence
    verifies REVOKED and cannot be amended."""
    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    amended = licence(version=2, lines=(PermitLine(1, "87032390", 150_000, "辆"),))
    answer = stub(permit_hub).AmendPermit(pb.AmendPermitRequest(permit=signed(amended)), metadata=COMMERCE)
    assert [v.version for v in answer.permit.versions] == [1, 2]
    assert answer.permit.balances[0].quantity == "150" and len(answer.permit.balances) == 1
    assert reasons(verify(permit_hub, verify_request(goods(hs="8703239000", quantity="120")))) == []
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).AmendPermit(
            pb.AmendPermitRequest(permit=signed(replace(amended, version=4))), metadata=COMMERCE
        )
    assert error_details(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "VERSION_CONFLICT")
    stub(permit_hub).RevokePermit(
        pb.RevokePermitRequest(kind="commerce.import_licence", number="26-AA-204966", reason="fraud"),
        metadata=COMMERCE,
    )
    assert reasons(verify(permit_hub, verify_request(goods(hs="8703239000")))) == ["REVOKED"]
    shown = stub(permit_hub).GetPermit(
        pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966"), metadata=CUSTOMS
    )
    assert shown.permit.state == pb.PERMIT_STATE_REVOKED and shown.permit.revoke_reason == "fraud"


def test_foreign_certificate_signed_with_a_key_revoked_after_a_date(permit_hub: RunningHub) -> None:
    """A foreign body's certificate issued before its old key was revoked is accepted; one issued after
    is refused as SIGNATURE_INVALID; the new key signs it fine."""
    foreign = certificate(number="E2604VN0001", kind="origin.foreign_certificate", issuer="vn-moit")
    early = replace(
        foreign, issue_date=date(2026, 3, 2), valid_from=date(2026, 3, 2), valid_to=date(2027, 3, 1)
    )
    stub(permit_hub).CreatePermit(
        create_request(early, signer=FOREIGN_OLD_KEY, key=FOREIGN_OLD_KEY), metadata=CUSTOMS
    )
    late = replace(foreign, number="E2604VN0002")
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).CreatePermit(
            create_request(late, signer=FOREIGN_OLD_KEY, key=FOREIGN_OLD_KEY), metadata=CUSTOMS
        )
    code, reason, _, fields = error_details(refused.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SIGNATURE_INVALID")
    assert "revoked after 2026-03-31" in fields["permit.signature"]
    stub(permit_hub).CreatePermit(
        create_request(late, signer=FOREIGN_NEW_KEY, key=FOREIGN_NEW_KEY), metadata=CUSTOMS
    )
    line = goods(
        number="E2604VN0002", kind="origin.foreign_certificate", hs="6109100011", quantity="500", unit="件"
    )
    assert reasons(verify(permit_hub, verify_request(line, customs_office="5300"))) == []


def test_tampered_stored_permit_verifies_signature_invalid(permit_hub: RunningHub) -> None:
    """Signatures are checked again at every verification: a stored permit altered in the database fails."""
    from ackhub.hub.store.models import PermitRow

    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    with permit_hub.server.db.transaction() as session:
        row = session.exec(select(PermitRow)).one()
        row.document = row.document.replace('"valid_to":"2026-12-31"', '"valid_to":"2026-12-30"')
        session.add(row)
    result = verify(permit_hub, verify_request())
    assert reasons(result) == ["SIGNATURE_INVALID"] and "does not verify" in result.details[0]


def test_draw_down_and_release_send_usage_records_to_the_issuer(permit_hub: RunningHub) -> None:
    """A draw-down takes quantity and a use and becomes a usage record delivered to the commerce ministry,
    which acknowledges it; a retry does not draw twice; a release gives both back with its own record."""
    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    request = draw_request(goods(quantity="30"))
    drawn = stub(permit_hub).DrawDownPermit(request, metadata=CUSTOMS)
    again = stub(permit_hub).DrawDownPermit(request, metadata=CUSTOMS)
    assert again.replayed and again.draw_down.draw_down_id == drawn.draw_down.draw_down_id
    assert drawn.draw_down.counted_use and drawn.draw_down.usage_record_id
    shown = (
        stub(permit_hub)
        .GetPermit(
            pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966"), metadata=CUSTOMS
        )
        .permit
    )
    assert (shown.uses, shown.balances[0].drawn, shown.balances[0].remaining) == (1, "30", "70")

    clock = permit_hub.server.clock
    inbox = Inbox(lambda d: Verdict.accept("licence 26-AA-204966 written off"))
    commerce = permit_hub.agency("commerce", clock=clock)  # type: ignore[arg-type]
    import threading

    threading.Thread(target=commerce.subscribe, args=(inbox,), daemon=True).start()
    wait_for(lambda: inbox.deliveries, what="the usage record at the commerce ministry")
    payload = json.loads(inbox.deliveries[0].record.payload)
    assert payload["licence_no"] == "26-AA-204966" and payload["action"] == "DRAW" and payload["qty"] == "30"
    assert payload["licence_type"] == "1" and payload["entry_id"] == DECLARATION

    def accepted() -> bool:
        record = permit_hub.exchange_stub.GetRecord(
            ex_pb.GetRecordRequest(record_id=drawn.draw_down.usage_record_id), metadata=CUSTOMS
        )
        return record.deliveries[0].state == 4  # ACCEPTED

    wait_for(accepted, what="the commerce ministry's acceptance")

    released = stub(permit_hub).ReleaseDrawDown(
        pb.ReleaseDrawDownRequest(draw_down_id=drawn.draw_down.draw_down_id, reason="declaration cancelled"),
        metadata=CUSTOMS,
    )
    assert released.draw_down.released and released.draw_down.release_record_id
    twice = stub(permit_hub).ReleaseDrawDown(
        pb.ReleaseDrawDownRequest(draw_down_id=drawn.draw_down.draw_down_id, reason="again"), metadata=CUSTOMS
    )
    assert twice.already_released
    shown = (
        stub(permit_hub)
        .GetPermit(
            pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966"), metadata=CUSTOMS
        )
        .permit
    )
    assert (shown.uses, shown.balances[0].remaining) == (0, "100")
    wait_for(lambda: len(inbox.deliveries) >= 2, what="the release record")
    assert json.loads(inbox.deliveries[-1].record.payload)["action"] == "RELEASE"
    with permit_hub.server.db.transaction() as session:
        kinds = [e.kind for e in session.exec(select(AuditEventRow)).all()]
    assert kinds.count("permit.drawn_down") == 1 and kinds.count("permit.draw_down_released") == 1


def test_one_batch_licence_has_one_use_and_a_certificate_one_shipment(permit_hub: RunningHub) -> None:
    """A one-batch licence serves one declaration (its other lines too); a second declaration is
    USES_EXHAUSTED; a certificate of origin likewise covers one shipment."""
    stub(permit_hub).CreatePermit(create_request(licence(multi_batch=False)), metadata=COMMERCE)
    stub(permit_hub).DrawDownPermit(draw_request(goods(item=1)), metadata=CUSTOMS)
    stub(permit_hub).DrawDownPermit(draw_request(goods(item=2)), metadata=CUSTOMS)  # same declaration
    other = "020220261525641691"
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).DrawDownPermit(draw_request(declaration_number=other), metadata=CUSTOMS)
    code, reason, metadata, _ = error_details(refused.value)
    assert (code, reason, metadata["reasons"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "USES_EXHAUSTED",
        "USES_EXHAUSTED",
    )
    assert reasons(verify(permit_hub, verify_request(declaration_number=other))) == ["USES_EXHAUSTED"]
    assert reasons(verify(permit_hub, verify_request(declaration_number=DECLARATION))) == []

    stub(permit_hub).CreatePermit(create_request(certificate()), metadata=(("x-ackhub-agency", "ccpit"),))
    line = goods(number="E26470ZC11220001", kind="origin.domestic_certificate", hs="0902409000", quantity="100",
                 unit="千克")  # fmt: skip
    stub(permit_hub).DrawDownPermit(draw_request(line), metadata=CUSTOMS)
    assert reasons(verify(permit_hub, verify_request(line, declaration_number=other))) == ["USES_EXHAUSTED"]


def test_draw_down_refusals_change_nothing(permit_hub: RunningHub) -> None:
    """Draw-downs by non-customs callers, of unknown permits, or with a reused request id are refused and
    leave every table as it was."""
    stub(permit_hub).CreatePermit(create_request(licence()), metadata=COMMERCE)
    first = draw_request()
    stub(permit_hub).DrawDownPermit(first, metadata=CUSTOMS)
    before = table_counts(permit_hub)
    cases = [
        (draw_request(), COMMERCE, grpc.StatusCode.PERMISSION_DENIED, "CUSTOMS_ONLY"),
        (draw_request(goods(number="26-AA-000001")), CUSTOMS, grpc.StatusCode.NOT_FOUND, "PERMIT_NOT_FOUND"),
        (draw_request(goods(quantity="5"), request_id=first.request_id), CUSTOMS, grpc.StatusCode.ALREADY_EXISTS,
         "REQUEST_ID_REUSED"),
        (draw_request(request_id="42"), CUSTOMS, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (draw_request(declaration_number=""), CUSTOMS, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ]  # fmt: skip
    for request, metadata, code, reason in cases:
        with pytest.raises(grpc.RpcError) as refused:
            stub(permit_hub).DrawDownPermit(request, metadata=metadata)
        assert error_details(refused.value)[:2] == (code, reason)
    assert table_counts(permit_hub) == before
    with pytest.raises(grpc.RpcError) as refused:
        stub(permit_hub).ReleaseDrawDown(
            pb.ReleaseDrawDownRequest(draw_down_id=str(uuid.uuid4()), reason="x"), metadata=CUSTOMS
        )
    assert error_details(refused.value)[:2] == (grpc.StatusCode.NOT_FOUND, "DRAW_DOWN_NOT_FOUND")


def test_an_enterprise_verifies_only_its_own_permits(tmp_path: Path) -> None:
    """With a JWT carrying its USCC, the holder verifies and shows its licence; another enterprise is refused."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ackhub.audit.acks import public_key_base64
    from ackhub.hub.auth.jwt import issue

    signer = Ed25519PrivateKey.from_private_bytes(b"enterprise-issuer".ljust(32, b"\0"))

    def edit(config: dict[str, Any]) -> None:
        permit_config(config)
        config["auth"] = {"enterprise_jwt_public_key": public_key_base64(signer.public_key())}

    running = start_hub(f"sqlite:///{tmp_path / 'hub.db'}", clock=ManualClock(NOW_MS), edit=edit)
    try:

        def as_enterprise(uscc: str) -> tuple[tuple[str, str]]:
            token = issue(signer, uscc, issuer="ackhub-dev", audience="ackhub", now_s=NOW_MS // 1000)
            return (("authorization", f"Bearer {token}"),)

        stub(running).CreatePermit(create_request(licence()), metadata=COMMERCE)
        answer = stub(running).VerifyPermit(verify_request(), metadata=as_enterprise(HOLDER))
        assert answer.result.verdict == pb.VERDICT_VALID
        get = pb.GetPermitRequest(kind="commerce.import_licence", number="26-AA-204966")
        assert stub(running).GetPermit(get, metadata=as_enterprise(HOLDER)).permit.current.content.number
        for call in (
            lambda: stub(running).VerifyPermit(verify_request(), metadata=as_enterprise(OTHER_HOLDER)),
            lambda: stub(running).GetPermit(get, metadata=as_enterprise(OTHER_HOLDER)),
            lambda: stub(running).DrawDownPermit(draw_request(), metadata=as_enterprise(HOLDER)),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert error_details(refused.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    finally:
        running.stop()
