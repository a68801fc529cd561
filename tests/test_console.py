"""The audit console over plain HTTP: sign-in, jurisdiction, CSRF, the pages and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from ackhub.core.clock import ManualClock
from ackhub.hub.store.models import AuditEventRow, EscalationRow
from tests.console_kit import console_url, escalate, operator_token, publish, start_console_hub
from tests.harness import RunningHub
from tests.security_data import bearer


@pytest.fixture(name="hub")
def fixture_hub(tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_console_hub(tmp_path, clock)
    try:
        yield running
    finally:
        running.stop()


def _client(hub: RunningHub) -> httpx.Client:
    return httpx.Client(base_url=console_url(hub), follow_redirects=False, timeout=10)


@contextmanager
def _signed_in(hub: RunningHub, token: str) -> Iterator[httpx.Client]:
    with _client(hub) as client:
        answer = client.post("/signin", data={"token": token, "next": "/"})
        assert answer.status_code == 303, answer.text
        yield client


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def _audit(hub: RunningHub, kind: str) -> list[AuditEventRow]:
    with hub.server.db.transaction() as session:
        return list(session.exec(select(AuditEventRow).where(AuditEventRow.kind == kind)))


def test_signin_sets_a_strict_httponly_cookie_and_shows_the_overview(
    hub: RunningHub, clock: ManualClock
) -> None:
    """A valid operator token signs in with an HttpOnly SameSite=Strict cookie; the overview has charts."""
    publish(hub)
    with _client(hub) as client:
        assert client.get("/").headers["location"].startswith("/signin")
        answer = client.post("/signin", data={"token": operator_token(clock), "next": "/"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = client.get("/")
        assert page.status_code == 200
        assert "operator:alice" in page.text and page.text.count("<svg") >= 5
        assert "1 records in the last hour" in page.text


@pytest.mark.parametrize("case", ["garbage", "expired", "agency", "wrong_audience"])
def test_bad_tokens_are_refused_at_sign_in(hub: RunningHub, clock: ManualClock, case: str) -> None:
    """Forged, expired, non-operator and wrong-audience tokens get the sign-in form again with 401."""
    token = {
        "garbage": "not.a.token",
        "expired": operator_token(clock, ttl_s=1),
        "agency": bearer(clock, "agency", "tax")[0][1].removeprefix("Bearer "),
        "wrong_audience": bearer(clock, "operator", "x", jurisdiction="HQ", audience="other")[0][1][7:],
    }[case]
    if case == "expired":
        clock.advance(2_000)
    with _client(hub) as client:
        answer = client.post("/signin", data={"token": token})
        assert answer.status_code == 401 and "set-cookie" not in answer.headers
        assert 'id="signin-error"' in answer.text


def test_a_session_ends_when_its_token_expires(hub: RunningHub, clock: ManualClock) -> None:
    """Once the token in the cookie expires, every page sends the operator back to sign in."""
    with _signed_in(hub, operator_token(clock, ttl_s=60)) as client:
        assert client.get("/escalations").status_code == 200
        clock.advance(61_000)
        answer = client.get("/escalations")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=/escalations&expired=1"
        assert client.get("/feed/events").status_code == 401


def test_an_action_outside_the_jurisdiction_is_refused_and_audited(
    hub: RunningHub, clock: ManualClock
) -> None:
    """An office-0301 operator cannot see or resolve a 0202 case; the attempt is in the audit log."""
    record_id = publish(hub)
    case = escalate(hub, clock, record_id)
    with _signed_in(hub, operator_token(clock, "0301", "bob")) as client:
        listing = client.get("/escalations")
        assert case.id not in listing.text
        answer = client.post(
            f"/escalations/{case.id}/resolve", data={"csrf": _csrf(listing.text), "reason": "not mine"}
        )
        assert answer.status_code == 403
        assert client.get(f"/records/{record_id}").status_code == 404
    refused = _audit(hub, "console.action_refused")
    assert [(e.actor, e.escalation_id) for e in refused] == [("operator:bob", None)]
    assert case.id in refused[0].data
    with hub.server.db.transaction() as session:
        assert session.exec(select(EscalationRow.state).where(EscalationRow.id == case.id)).one() == "OPEN"


def test_operator_in_jurisdiction_resolves_notes_and_redelivers(hub: RunningHub, clock: ManualClock) -> None:
    """A 0202 operator's note, redelivery and resolution go through Exchange and are audited as theirs."""
    record_id = publish(hub)
    case = escalate(hub, clock, record_id)
    with _signed_in(hub, operator_token(clock, "0202", "carol")) as client:
        csrf = _csrf(client.get("/escalations").text)
        for what, field in (
            ("note", {"text": "called tax"}),
            ("redeliver", {}),
            ("resolve", {"reason": "ok"}),
        ):
            answer = client.post(
                f"/escalations/{case.id}/{what}", data={"csrf": csrf, "back": "/escalations", **field}
            )
            assert answer.status_code == 303, answer.text
        assert "Case resolved." in client.get("/escalations?done=resolved&state=").text
        assert "ESCALATION_RESOLVED" in client.get(f"/records/{record_id}").text
    kinds = {e.kind for e in _audit(hub, "escalation.note_added") + _audit(hub, "escalation.resolved")}
    assert kinds == {"escalation.note_added", "escalation.resolved"}
    assert {e.actor for e in _audit(hub, "delivery.redelivery_requested")} == {"operator:carol"}


def test_the_escalations_page_says_which_states_it_shows_and_offers_the_others(
    hub: RunningHub, clock: ManualClock
) -> None:
    """By default the page shows open cases and says so, with links to resolved, closed-by-ack and all;
    a resolved case is one of those links away, in English and in 中文."""
    record_id = publish(hub)
    case = escalate(hub, clock, record_id)
    with _signed_in(hub, operator_token(clock, "0202", "carol")) as client:
        page = client.get("/escalations").text
        assert "Showing open cases." in page and case.id in page
        for state in ("RESOLVED", "CLOSED_BY_ACK", ""):
            assert f'href="/escalations?state={state}"' in page
        csrf = _csrf(page)
        client.post(
            f"/escalations/{case.id}/resolve", data={"csrf": csrf, "reason": "tax confirmed by phone"}
        )
        assert case.id not in client.get("/escalations").text
        resolved = client.get("/escalations?state=RESOLVED").text
        assert "Showing cases resolved by an operator." in resolved and case.id in resolved
        assert 'href="/escalations?state=OPEN"' in resolved
        assert "Showing cases in every state." in client.get("/escalations?state=").text
        client.get("/lang/zh", params={"next": "/escalations"})
        assert "当前显示：未结案件。" in client.get("/escalations").text


def test_an_action_without_the_csrf_token_is_refused(hub: RunningHub, clock: ManualClock) -> None:
    """A POST whose CSRF token is missing or wrong changes nothing."""
    record_id = publish(hub)
    case = escalate(hub, clock, record_id)
    with _signed_in(hub, operator_token(clock)) as client:
        for csrf in ("", "0" * 40):
            answer = client.post(f"/escalations/{case.id}/resolve", data={"csrf": csrf, "reason": "x"})
            assert answer.status_code == 403
    assert not _audit(hub, "escalation.resolved")


def test_pages_render_for_headquarters(hub: RunningHub, clock: ManualClock) -> None:
    """Agencies, permits, audit (with a verification) and the feed page answer for a signed-in operator."""
    record_id = publish(hub)
    hub.run(hub.server.checkpoint())
    with _signed_in(hub, operator_token(clock)) as client:
        agencies = client.get("/agencies").text
        assert 'id="agency-tax"' in agencies and "tax-test-1" in agencies
        assert "No permit" in client.get("/permits?number=26-AA-1").text
        audit = client.get("/audit")
        assert "record.published" in audit.text
        verdict = client.post("/audit/verify", data={"csrf": _csrf(audit.text)})
        assert 'id="verdict"' in verdict.text and "OK:" in verdict.text
        assert client.get("/feed?agency=tax").status_code == 200
        record = client.get(f"/records/{record_id}").text
        assert "PUBLISHED" in record and "in signed checkpoint" in record
        assert "<dt>Schema version</dt><dd>customs.export_declaration.released v1</dd>" in record


def test_language_switch_keeps_the_page(hub: RunningHub, clock: ManualClock) -> None:
    """/lang/zh sets the language cookie and returns to the page, now in Chinese."""
    with _signed_in(hub, operator_token(clock)) as client:
        answer = client.get("/lang/zh", params={"next": "/escalations"})
        assert answer.status_code == 303 and answer.headers["location"] == "/escalations"
        assert "升级处理" in client.get("/escalations").text
        assert client.get("/lang/en", params={"next": "//evil.example"}).headers["location"] == "/"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_report_what_operators_alert_on(hub: RunningHub, clock: ManualClock) -> None:
    """/metrics has, per agency, open deliveries, the oldest one's age, those past deadline, open cases by
    level and breakers; the audit log's checkpoint ages; and ack latency observed on acknowledgement."""
    from ackhub.client.agency import Verdict, start_subscription
    from tests.harness import Inbox, wait_for

    record_id = publish(hub)
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
    escalate(hub, clock, record_id)  # 31 s later: tax's deadline (30 s) passed, a case opened
    with _client(hub) as client:

        def scraped() -> str:
            text = client.get("/metrics").text
            return (
                text if 'ackhub_ack_latency_seconds_count{agency="fx",status="RECEIVED"} 1.0' in text else ""
            )

        found = _samples(wait_for(scraped, what="fx's acknowledgement in the histogram"))
        for name, value in {
            "ackhub_open_deliveries": {"tax": 1, "fx": 0, "customs": 0},
            "ackhub_oldest_open_delivery_age_seconds": {"tax": 31.0, "fx": 0},
            "ackhub_open_deliveries_past_deadline": {"tax": 1, "fx": 0},
        }.items():
            for agency, expected in value.items():
                assert found[(name, (("agency", agency),))] == expected, (name, agency)
        assert found[("ackhub_open_escalations", (("agency", "tax"), ("level", "1")))] == 1
        assert found[("ackhub_open_escalations_at_top_level", (("agency", "tax"),))] == 0, "tax's has 2 rungs"
        assert found[("ackhub_circuit_breaker_state", (("agency", "tax"), ("state", "CLOSED")))] == 1
        assert ("ackhub_audit_checkpoint_age_seconds", ()) not in found, "no checkpoint signed yet"
        assert found[("ackhub_audit_unsigned_age_seconds", ())] == 31.0, "the record's publication waits"

        hub.run(hub.server.checkpoint())
        clock.advance(5_000)
        found = _samples(client.get("/metrics").text)
        assert found[("ackhub_audit_checkpoint_age_seconds", ())] == 5.0
        assert found[("ackhub_audit_unsigned_age_seconds", ())] == 0.0, "a quiet hub is not stale"
        assert found[("ackhub_oldest_open_delivery_age_seconds", (("agency", "tax"),))] == 36.0
        clock.advance(60_000)
        hub.sweep()  # the case climbs to level 2, the top of tax's ladder
        found = _samples(client.get("/metrics").text)
        assert found[("ackhub_open_escalations", (("agency", "tax"), ("level", "2")))] == 1
        assert found[("ackhub_open_escalations_at_top_level", (("agency", "tax"),))] == 1


def test_record_page_says_what_is_closed_and_what_waits(hub: RunningHub, clock: ManualClock) -> None:
    """fx's RECEIVED closes its delivery (grey, "closed by RECEIVED"); tax's waits for the business answer
    (amber); the timeline says why fx's is closed; the words change with the language, the meanings not."""
    import re

    from ackhub.client.agency import Verdict, start_subscription
    from tests.harness import Inbox, wait_for

    record_id = publish(hub)
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
    start_subscription(hub.agency("tax", clock=clock), Inbox(lambda d: Verdict.received()))
    with _signed_in(hub, operator_token(clock)) as client:
        page = wait_for(
            lambda: (text := client.get(f"/records/{record_id}").text).count('">RECEIVED · ') == 2 and text,
            what="both deliveries RECEIVED",
        )
        sections = dict(
            re.findall(r'<section class="card delivery" id="delivery-(\w+)">(.*?)</section>', page, re.S)
        )
        assert 'data-meaning="closed">RECEIVED · closed' in sections["fx"]
        assert "closed by RECEIVED at" in sections["fx"]
        assert "closed: RECEIVED is enough on this route" in sections["fx"]
        assert 'data-meaning="waiting">RECEIVED · waiting' in sections["tax"]
        assert "waiting for ACCEPTED or REJECTED" in sections["tax"] and "closed:" not in sections["tax"]
        client.get("/lang/zh")
        chinese = client.get(f"/records/{record_id}").text
        assert 'data-meaning="closed">RECEIVED · 已办结' in chinese
        assert 'data-meaning="waiting">RECEIVED · 等待中' in chinese
        assert "<dt>模式版本</dt><dd>customs.export_declaration.released v1</dd>" in chinese


def test_the_agencies_page_says_when_each_agency_was_last_seen(hub: RunningHub, clock: ManualClock) -> None:
    """Customs publishes and fx acknowledges: the page says so at once (this process's own sightings),
    and after the heartbeat from `agency_activity` (ackhub.hub.store.activity) rather than from memory;
    tax, which said nothing, was never seen."""
    from ackhub.client.agency import Verdict, start_subscription
    from ackhub.hub.store.models import AgencyActivityRow
    from tests.harness import wait_for

    fx = hub.agency("fx")
    start_subscription(fx, lambda delivery: Verdict.received())
    publish(hub)
    assert fx.results.get(timeout=10).ok

    def rows(client: httpx.Client) -> dict[str, str]:
        page = client.get("/agencies").text
        return {a: page.split(f'id="agency-{a}"')[1].split("</tr>")[0] for a in ("customs", "tax", "fx")}

    with _signed_in(hub, operator_token(clock)) as client:
        wait_for(lambda: "never" not in rows(client)["fx"], what="fx's acknowledgement seen")
        before = rows(client)
        assert "never" not in before["customs"] and "never" in before["tax"]
        hub.run(hub.server.heartbeat())
        assert hub.server.activity.unwritten() == {}
        with hub.server.db.transaction() as session:
            stored = {row.agency: row for row in session.exec(select(AgencyActivityRow)).all()}
        assert stored["customs"].last_publish_ms == clock.now_ms() and stored["customs"].last_ack_ms is None
        assert stored["fx"].last_ack_ms == clock.now_ms() and "tax" not in stored
        assert rows(client) == before  # the same times, now read from the store
