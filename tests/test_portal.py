"""The enterprise portal over HTTP (no browser): an enterprise sees only its own records, the console's
protections apply (cookie flags, CSP, CSRF), the verification page answers every malformed upload with a
message and never a 500, and sign-in and verification are rate-limited per client address, with buckets
shared by every hub process on one database and forgotten when idle."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from ackhub.audit.proofs import verify_delivery_proof
from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.core.principal import Principal
from ackhub.hub.cases import RecordSubject
from ackhub.hub.portal import verdicts
from ackhub.hub.portal.i18n import translator
from ackhub.hub.portal.session import SESSION_COOKIE
from ackhub.hub.store.portal_models import RateBucketRow
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, wait_for
from tests.portal_kit import enterprise_token, portal_url, publish, start_portal_hub
from tests.security_data import ALPHA, BETA, bearer


@pytest.fixture(name="hub")
def fixture_hub(tmp_path: Path, clock: ManualClock, database_url: str) -> Iterator[RunningHub]:
    running = start_portal_hub(tmp_path, clock, database_url)
    try:
        yield running
    finally:
        running.stop()


def signed_in(hub: RunningHub, clock: ManualClock, uscc: str = ALPHA) -> httpx.Client:
    client = httpx.Client(base_url=portal_url(hub))
    answer = client.post("/signin", data={"token": enterprise_token(clock, uscc), "next": "/portal/records"})
    assert answer.status_code == 303, answer.text
    return client


def test_an_enterprise_never_sees_another_enterprises_records(hub: RunningHub, clock: ManualClock) -> None:
    """BETA lists only its own record; ALPHA's record, its proof and its summary are 'not found' for
    BETA, exactly as for a record that does not exist."""
    alpha_record = publish(hub, ALPHA)
    beta_record = publish(hub, BETA)
    beta = signed_in(hub, clock, BETA)
    listed = beta.get("/records")
    assert listed.status_code == 200
    assert beta_record in listed.text and alpha_record not in listed.text
    for record_id in (alpha_record, str(uuid.uuid4())):
        for path in (
            f"/records/{record_id}",
            f"/records/{record_id}/proof.json",
            f"/records/{record_id}/proof",
        ):
            answer = beta.get(path)
            assert answer.status_code == 404, path
            assert "No record of yours with that id." in answer.text
            assert alpha_record not in answer.text.split("<main>")[1]  # (the language link repeats the path)
    own = beta.get(f"/records/{beta_record}/proof.json")
    assert own.status_code == 200 and json.loads(own.content)["record"]["subject_uscc"] == BETA


def test_operator_tokens_and_forged_sessions_do_not_open_the_portal(
    hub: RunningHub, clock: ManualClock
) -> None:
    """Only an enterprise token signs in; a session cookie edited to another USCC is not a session."""
    client = httpx.Client(base_url=portal_url(hub))
    operator = bearer(clock, "operator", "alice", jurisdiction="HQ")[0][1].removeprefix("Bearer ")
    refused = client.post("/signin", data={"token": operator})
    assert refused.status_code == 401 and "cannot sign in to the portal" in refused.text
    assert SESSION_COOKIE not in refused.cookies
    value = signed_in(hub, clock, ALPHA).cookies[SESSION_COOKIE]
    body, _, mac = value.partition(".")
    import base64

    data = json.loads(base64.urlsafe_b64decode(body + "=="))
    data["uscc"] = BETA
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + mac
    intruder = httpx.Client(base_url=portal_url(hub), cookies={SESSION_COOKIE: forged})
    answer = intruder.get("/records")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/portal/signin")


def test_the_consoles_protections_apply(hub: RunningHub, clock: ManualClock) -> None:
    """The session cookie is HttpOnly, SameSite and scoped to /portal; pages carry the console's CSP;
    a form posted without its CSRF token changes nothing."""
    client = httpx.Client(base_url=portal_url(hub))
    answer = client.post("/signin", data={"token": enterprise_token(clock)})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/portal" in cookie
    page = client.get("/records")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    forged = client.post("/signout", data={"csrf": "0" * 40})
    assert forged.status_code == 403
    assert client.get("/records").status_code == 200  # still signed in
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    assert client.post("/signout", data={"csrf": token.group(1)}).status_code == 303


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (b"", "Choose a file or paste a proof first."),
        (b"\xff\xfe\x00garbage", "it is not JSON"),
        (b'{"format": "ackhub-delivery-proof/v1", "record"', "it is not JSON"),
        (b"[1, 2, 3]", "it is not a JSON object"),
        (b'{"format": "something else"}', "not a ackhub-delivery-proof/v1 document"),
        (b'{"format": "ackhub-delivery-proof/v1"}', "the document is malformed"),
        (b'{"format": "ackhub-delivery-proof/v1", "checkpoint": {"origin": 5}, "events": 7}', "malformed"),
        (b"1" * 3_000_000, "larger than"),
    ],
)
def test_malformed_proofs_get_a_message_never_a_500(
    hub: RunningHub, clock: ManualClock, upload: bytes, message: str
) -> None:
    """Whatever is uploaded, the answer is a page that says what is wrong with it."""
    client = httpx.Client(base_url=portal_url(hub))
    answer = client.post("/verify", files={"proof": ("proof.json", upload, "application/json")})
    assert answer.status_code in (400, 413, 422), answer.status_code
    assert message in answer.text.replace("&#39;", "'")


def test_sign_in_is_rate_limited_per_address_across_processes_and_idle_buckets_go(
    tmp_path: Path, clock: ManualClock, database_url: str
) -> None:
    """With a burst of 3, the fourth sign-in attempt from one address within the minute is refused — also
    when it goes to a second hub process on the same database; verification has its own bucket; a bucket
    idle long enough to be full again is deleted."""
    (tmp_path / "a").mkdir()
    first = start_portal_hub(tmp_path / "a", clock, database_url, rate_burst=3, rate_per_minute=6)
    try:
        second = None
        if not first.server.db.is_sqlite:
            (tmp_path / "b").mkdir()
            second = start_portal_hub(tmp_path / "b", clock, database_url, rate_burst=3, rate_per_minute=6)
        try:
            hubs = [first, second or first]
            answers = [
                httpx.post(portal_url(hubs[i % 2]) + "/signin", data={"token": "not a token"}).status_code
                for i in range(4)
            ]
            assert answers == [401, 401, 401, 429]
            verify = httpx.post(portal_url(first) + "/verify", data={"text": "{}"})
            assert verify.status_code == 422
            clock.advance(10_001)  # one token back (6 a minute)
            assert httpx.post(portal_url(hubs[1]) + "/signin", data={"token": "x"}).status_code == 401
            assert httpx.post(portal_url(hubs[0]) + "/signin", data={"token": "x"}).status_code == 429
            limiter = first.server.console.portal.limiter  # type: ignore[union-attr]
            clock.advance(31_000)  # the buckets are full again: idle
            assert first.run(first.server.db.run(limiter.forget_idle, clock.now_ms())) == 2
            with first.server.db.transaction() as session:
                assert session.exec(select(RateBucketRow)).first() is None
        finally:
            if second is not None:
                second.stop()
    finally:
        first.stop()


def test_my_records_page_through_and_filter_by_date(hub: RunningHub, clock: ManualClock) -> None:
    """23 records: 20 on the first page, 3 on the next, none lost or repeated; a date range that ends
    before today finds none; a malformed date is refused naming the field."""
    published = {publish(hub, ALPHA, declaration=f"0202202605256{n:05d}") for n in range(23)}
    client = signed_in(hub, clock)
    first = client.get("/records")
    found = set(re.findall(r'data-record="([^"]+)"', first.text))
    assert len(found) == 20
    more = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert more is not None
    second = client.get(more.group(1).replace("&amp;", "&").removeprefix("/portal"))
    rest = set(re.findall(r'data-record="([^"]+)"', second.text))
    assert len(rest) == 3 and found | rest == published and 'id="next-page"' not in second.text
    assert not re.findall(r'data-record="', client.get("/records", params={"to": "2020-01-01"}).text)
    today = client.get("/records", params={"from": "2020-01-01"})
    assert len(re.findall(r'data-record="', today.text)) == 20
    bad = client.get("/records", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from: is not a date (YYYY-MM-DD)" in bad.text
    bad = client.get("/records", params={"declaration": "12"})
    assert bad.status_code == 400 and "declaration_number:" in bad.text


def test_the_verifier_checks_the_records_facts_against_the_logged_publication(
    hub: RunningHub, clock: ManualClock
) -> None:
    """A proof whose record type, subject, declaration number, publisher or a recipient's delivery id was
    edited no longer verifies, naming what differs (before, only the id and digest were compared)."""
    record_id = publish(hub, ALPHA)
    document = json.loads(signed_in(hub, clock).get(f"/records/{record_id}/proof.json").content)
    assert hub.server.ledger is not None
    key = hub.server.ledger.public_key
    assert verify_delivery_proof(document, key).ok
    edits = {
        "record_type": lambda d: d["record"].update(record_type="fx.verification.result"),
        "subject_uscc": lambda d: d["record"].update(subject_uscc=BETA),
        "declaration_number": lambda d: d["record"].update(declaration_number="020220260525641699"),
        "publisher": lambda d: d["record"].update(publisher="tax"),
        "delivery to tax": lambda d: d["recipients"][0].update(delivery_id=str(uuid.uuid4())),
    }
    for what, edit in edits.items():
        copy = json.loads(json.dumps(document))
        edit(copy)
        verdict = verify_delivery_proof(copy, key)
        assert not verdict.ok and any(f"({what})" in f for f in verdict.failures), (what, verdict.failures)


def test_a_session_ends_with_the_token_that_opened_it(hub: RunningHub, clock: ManualClock) -> None:
    """A session lasts no longer than the enterprise token it was opened with: past it, pages send the
    browser back to sign in, saying the session ended."""
    client = httpx.Client(base_url=portal_url(hub))
    opened = client.post("/signin", data={"token": enterprise_token(clock, ttl_s=120)})
    assert opened.status_code == 303
    assert client.get("/records").status_code == 200
    clock.advance(121_000)
    ended = client.get("/records")
    assert ended.status_code == 303
    assert ended.headers["location"] == "/portal/signin?next=/portal/records&expired=1"


def _acknowledged(hub: RunningHub, clock: ManualClock) -> str:
    """ALPHA's record that tax accepts and fx signs RECEIVED for; returns its id."""
    start_subscription(hub.agency("tax", clock=clock), Inbox(lambda d: Verdict.accept("登记成功 registered")))
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
    record_id = publish(hub, ALPHA)

    def states() -> set[int]:
        found = hub.exchange_stub.GetRecord(
            exchange_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return {d.state for d in found.deliveries}

    wait_for(
        lambda: states() == {types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_RECEIVED},
        what="tax ACCEPTED and fx RECEIVED",
    )
    return record_id


def test_the_verifiers_sentences_are_said_in_chinese_on_the_chinese_page(
    hub: RunningHub, clock: ManualClock
) -> None:
    """Every sentence the verifier says about a good proof (the checkpoint, the publication, each signed
    acknowledgement, a case) and every kind of failure it reports about damaged ones is said in 中文 on the
    中文 page, with the ids, digests and keys as they were; the English page keeps the verifier's words."""
    record_id = _acknowledged(hub, clock)
    hub.run(
        hub.server.cases.open(  # type: ignore[union-attr]
            Principal("enterprise", ALPHA), "OTHER", RecordSubject(record_id), text="a question"
        )
    )
    client = signed_in(hub, clock)
    good = json.loads(client.get(f"/records/{record_id}/proof.json").content)
    assert hub.server.ledger is not None
    key = hub.server.ledger.public_key
    assert len(verify_delivery_proof(good, key).statements) >= 4

    def damaged(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        copy = json.loads(json.dumps(good))
        edit(copy)
        return copy

    first_event = next(iter(good["events"]))
    documents = [
        good,
        {"format": "ackhub-delivery-proof/v1"},
        {"format": "something else"},
        damaged(lambda d: d["checkpoint"].update(root_hash="AAAA" + d["checkpoint"]["root_hash"][4:])),
        damaged(lambda d: d["events"][first_event].update(audit_path=[])),
        damaged(lambda d: d["record"].update(declaration_number="030320260525641690")),
        damaged(lambda d: d["record"].update(published_event=None)),
        damaged(
            lambda d: d["record"].update(published_event=d["recipients"][0]["acknowledgements"][0]["event"])
        ),
        damaged(lambda d: d["recipients"][0]["acknowledgements"][0].update(public_key="bm90IGEga2V5")),
        damaged(lambda d: d["recipients"][0]["acknowledgements"][0].update(reason="edited")),
        damaged(lambda d: d["recipients"][1].update(acknowledgements=[])),
    ]
    t = translator("zh")
    said: set[str] = set()
    for document in documents:
        verdict = verify_delivery_proof(document, key)
        for sentence in verdict.statements + verdict.failures:
            chinese = verdicts.say(sentence, "zh", t)
            assert chinese != sentence, f"not translated: {sentence}"
            assert verdicts.say(sentence, "en", t) == sentence
            said.add(chinese)
    assert any(s.startswith("中心审计日志 ") for s in said)
    assert any(f"记录 {record_id}" in s and "中心将其记为审计事件" in s for s in said)
    assert any(
        "的系统（tax）于" in s and "受理了记录" in s and "理由为 '登记成功 registered'" in s for s in said
    )
    assert any("的系统（fx）于" in s and "签收了记录" in s for s in said)
    assert any(s.startswith("关于此记录的案件 ") for s in said)
    assert any("文件与中心在审计事件" in s and "（declaration_number）" in s for s in said)

    client.cookies.set("ackhub_lang", "zh")
    page = client.post("/verify", data={"text": json.dumps(good)})
    assert page.status_code == 200
    proven = page.text.split('id="proven"')[1].split("</ul>")[0]
    assert "中心审计日志" in proven and "published record" not in proven and "audit event" not in proven
