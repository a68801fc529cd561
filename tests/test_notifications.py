"""Enterprises' notifications end to end: subscriptions through SubscriptionService over real gRPC, the
outbox read from the audit log, Standard Webhooks to a real HTTP endpoint on loopback (verified with the
`standardwebhooks` package), e-mail to a real SMTP server (aiosmtpd), retries with backoff under the same
webhook-id, an endpoint disabled after failing for the configured time and re-enabled by the enterprise,
the delivery log, and refusals that name the field and store nothing."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import grpc
import pytest
from standardwebhooks.webhooks import Webhook

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.hub.ledger import log as audit_log
from ackhub.hub.notifications.targets import Resolved, TargetRefused, check_webhook_url, is_public
from ackhub.v1 import case_service_pb2 as case_pb
from ackhub.v1 import case_service_pb2_grpc as case_grpc
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import subscription_service_pb2 as pb
from ackhub.v1 import subscription_service_pb2_grpc as pb_grpc
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, error_details, start_hub, table_counts, wait_for
from tests.notify_kit import Endpoint, Mailbox, notify
from tests.portal_kit import publish
from tests.security_data import ALPHA, BETA, DECLARATION, TYPE, bearer, with_jwks

OTHER = "020220260525641691"


@pytest.fixture(name="mailbox")
def fixture_mailbox() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    mailbox.start()
    try:
        yield mailbox
    finally:
        mailbox.stop()


@pytest.fixture(name="endpoint")
def fixture_endpoint() -> Iterator[Endpoint]:
    endpoint = Endpoint()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def start(
    tmp_path: Path, clock: ManualClock, database_url: str, mailbox: Mailbox, **server: Any
) -> RunningHub:
    jwks = with_jwks(tmp_path / "jwks.json")

    def edit(config: dict[str, Any]) -> None:
        jwks(config)
        config["server"].update(server)
        config["notifications"] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "mail_from": "ackhub@hub.example.cn",
            "retry_first_interval": "5s",
            "retry_multiplier": 2.0,
            "disable_after": "60s",
        }
        config["agencies"][1]["name"] = "State Taxation Administration"

    return start_hub(database_url, clock=clock, edit=edit)


@pytest.fixture(name="hub")
def fixture_hub(
    tmp_path: Path, clock: ManualClock, database_url: str, mailbox: Mailbox
) -> Iterator[RunningHub]:
    running = start(tmp_path, clock, database_url, mailbox)
    try:
        yield running
    finally:
        running.stop()


def stub(hub: RunningHub) -> pb_grpc.SubscriptionServiceStub:
    return pb_grpc.SubscriptionServiceStub(hub.channel)


def subscribe(hub: RunningHub, clock: ManualClock, uscc: str = ALPHA, **fields: Any) -> pb.Subscription:
    request = pb.CreateSubscriptionRequest(**fields)
    return stub(hub).CreateSubscription(request, metadata=bearer(clock, "enterprise", uscc)).subscription


def answered(hub: RunningHub, clock: ManualClock) -> str:
    """ALPHA's record: tax RECEIVED then ACCEPTED, fx REJECTED (which escalates); returns its id."""

    def ours(d: Any) -> bool:
        return bool(d.record.declaration_number == DECLARATION)

    start_subscription(
        hub.agency("tax", clock=clock),
        Inbox(lambda d: [Verdict.received(), Verdict.accept("登记成功 registered")] if ours(d) else None),
    )
    start_subscription(
        hub.agency("fx", clock=clock),
        Inbox(lambda d: Verdict.reject("amount does not match") if ours(d) else None),
    )
    record_id = publish(hub)

    def states() -> set[int]:
        found = hub.exchange_stub.GetRecord(
            exchange_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return {d.state for d in found.deliveries}

    wait_for(
        lambda: states() == {types_pb2.DELIVERY_STATE_ACCEPTED, types_pb2.DELIVERY_STATE_REJECTED},
        what="tax ACCEPTED and fx REJECTED",
    )
    return record_id


def test_a_webhook_hears_of_every_change_once_signed_the_standard_webhooks_way(
    hub: RunningHub, clock: ManualClock, endpoint: Endpoint
) -> None:
    """RECEIVED, ACCEPTED, REJECTED and ESCALATED of ALPHA's record reach ALPHA's endpoint, each verifying
    with the subscription's secret; BETA's record is not announced;
    a second pass sends nothing again."""
    url = endpoint.start()
    made = subscribe(hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK, target=url)
    assert made.signing_secret.startswith("whsec_") and made.state == pb.SUBSCRIPTION_STATE_ACTIVE
    record_id = answered(hub, clock)
    publish(hub, uscc=BETA)
    first = notify(hub)
    assert {o.outcome for o in first.sent} == {"DELIVERED"}
    seen = endpoint.requests()
    bodies = [Webhook(made.signing_secret).verify(s.body, s.headers) for s in seen]
    assert sorted((b["type"], b["data"]["agency"]) for b in bodies) == [
        ("record.accepted", "tax"),
        ("record.escalated", "fx"),
        ("record.received", "tax"),
        ("record.rejected", "fx"),
    ]
    assert {b["data"]["record_id"] for b in bodies} == {record_id}
    rejected = next(b for b in bodies if b["type"] == "record.rejected")
    assert rejected["data"]["reason"] == "amount does not match"
    accepted = next(b for b in bodies if b["type"] == "record.accepted")
    assert accepted["data"]["agency_name"] == "State Taxation Administration"
    assert len({s.headers["webhook-id"] for s in seen}) == 4
    assert all(s.headers["webhook-id"].startswith("msg_") for s in seen)
    again = notify(hub)
    assert again.announced == 0 and again.sent == [] and len(endpoint.requests()) == 4


def test_filters_by_declaration_type_and_event_and_email_over_smtp(
    hub: RunningHub, clock: ManualClock, mailbox: Mailbox
) -> None:
    """An e-mail subscription to one declaration's REJECTED only gets one message, in both languages,
    with the notification id as its Message-ID; a subscription to another declaration gets nothing."""
    subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_EMAIL,
        target="export-desk@hualian.example.cn",
        declaration_number=DECLARATION,
        record_type=TYPE,
        events=[pb.SUBSCRIPTION_EVENT_REJECTED],
    )
    subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_EMAIL,
        target="other@hualian.example.cn",
        declaration_number=OTHER,
    )
    answered(hub, clock)
    sent = notify(hub).sent
    assert [o.outcome for o in sent] == ["DELIVERED"]
    [message] = mailbox.messages
    assert message["To"] == "export-desk@hualian.example.cn"
    assert message["Message-ID"] == f"<{sent[0].due.id}@ackhub>"
    text = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "rejected by fx" in str(message["Subject"]) or "rejected by" in str(message["Subject"])
    assert "amount does not match" in text and "已退回" in text


def test_retries_keep_the_webhook_id_disable_after_failing_and_re_enable(
    hub: RunningHub, clock: ManualClock, endpoint: Endpoint
) -> None:
    """The endpoint fails: the notification is retried after the backoff with the same webhook-id; failing
    for longer than `disable_after` disables the subscription (nothing is sent meanwhile); the enterprise
    re-enables it and the waiting notifications go out with their ids; the delivery log shows every attempt."""
    failing = True
    endpoint.status = lambda seen: 503 if failing else 200
    url = endpoint.start()
    made = subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK,
        target=url,
        events=[pb.SUBSCRIPTION_EVENT_ACCEPTED],
    )
    answered(hub, clock)
    assert [o.outcome for o in notify(hub).sent] == ["FAILED"]
    assert notify(hub).sent == []  # not due yet: the backoff is 5 s
    clock.advance(5_000)
    assert [o.due.attempt for o in notify(hub).sent] == [2]
    ids = [s.headers["webhook-id"] for s in endpoint.requests()]
    assert len(ids) == 2 and ids[0] == ids[1]
    for wait in (10_000, 20_000, 40_000):  # 5 s, then 10, 20, 40: past the 60 s it may fail for
        clock.advance(wait)
        notify(hub)
    owner = bearer(clock, "enterprise", ALPHA)
    got = stub(hub).GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=made.subscription_id), metadata=owner
    )
    assert got.subscription.state == pb.SUBSCRIPTION_STATE_DISABLED
    assert "HTTP 503" in got.subscription.disabled_reason and got.subscription.signing_secret == ""
    sent_before = len(endpoint.requests())
    clock.advance(60_000)
    assert notify(hub).sent == [] and len(endpoint.requests()) == sent_before  # disabled: kept, not sent

    failing = False
    owner = bearer(clock, "enterprise", ALPHA)
    enabled = stub(hub).EnableSubscription(
        pb.EnableSubscriptionRequest(subscription_id=made.subscription_id), metadata=owner
    )
    assert enabled.subscription.state == pb.SUBSCRIPTION_STATE_ACTIVE
    assert [o.outcome for o in notify(hub).sent] == ["DELIVERED"]
    last = endpoint.requests()[-1]
    assert last.headers["webhook-id"] == ids[0]
    assert Webhook(made.signing_secret).verify(last.body, last.headers)["type"] == "record.accepted"
    log = stub(hub).ListNotificationAttempts(
        pb.ListNotificationAttemptsRequest(subscription_id=made.subscription_id), metadata=owner
    )
    outcomes = [(a.attempt, a.outcome, a.http_status) for a in reversed(log.attempts)]
    assert outcomes[0] == (1, "FAILED", 503) and outcomes[-1] == (len(outcomes), "DELIVERED", 200)
    assert {a.notification_id for a in log.attempts} == {ids[0]}
    assert all(a.event == pb.SUBSCRIPTION_EVENT_ACCEPTED for a in log.attempts)


def test_nothing_is_sent_for_what_did_not_commit_and_nothing_is_lost_across_a_restart(
    tmp_path: Path, clock: ManualClock, database_url: str, mailbox: Mailbox, endpoint: Endpoint
) -> None:
    """An acknowledgement's audit event written in a transaction that rolls back is never announced; a
    notification made by one hub process and not yet sent when it stops is sent by the next one."""
    hub = start(tmp_path, clock, database_url, mailbox)
    try:
        url = endpoint.start()
        subscribe(hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK, target=url)
        record_id = publish(hub, declaration=OTHER)  # nobody answers it

        class Abandon(Exception):
            pass

        def abandoned_acknowledgement() -> None:
            with hub.server.db.transaction() as session:
                audit_log.append(
                    session,
                    kind="delivery.accepted",
                    actor="agency:tax",
                    time_ms=clock.now_ms(),
                    record_id=record_id,
                    data={"status": "ACCEPTED", "reason": ""},
                )
                raise Abandon

        with pytest.raises(Abandon):
            abandoned_acknowledgement()
        assert notify(hub).announced == 0
        assert endpoint.requests() == []

        endpoint.status = lambda seen: 500
        answered(hub, clock)  # another record of ALPHA's, answered: four notifications
        assert len(notify(hub).sent) == 4
    finally:
        hub.stop()
    endpoint.status = lambda seen: 204
    clock.advance(5_000)
    again = start(tmp_path, clock, database_url, mailbox)
    try:
        resent = notify(again).sent
        assert sorted(o.outcome for o in resent) == ["DELIVERED"] * 4
    finally:
        again.stop()
    first_four = [s.headers["webhook-id"] for s in endpoint.requests()[:4]]
    last_four = [s.headers["webhook-id"] for s in endpoint.requests()[4:]]
    assert sorted(first_four) == sorted(last_four)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_WEBHOOK, "target": "ftp://hooks.example.cn/x"},
            "target",
            "https://",
        ),
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_WEBHOOK, "target": "http://hooks.example.cn/x"},
            "target",
            "plain http",
        ),
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_WEBHOOK, "target": "https://me:pw@hooks.example.cn/"},
            "target",
            "password",
        ),
        ({"channel": pb.SUBSCRIPTION_CHANNEL_WEBHOOK, "target": "not a url"}, "target", "spaces"),
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_EMAIL, "target": "someone at example"},
            "target",
            "not an e-mail",
        ),
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_EMAIL, "target": "a@b.cn\r\nBcc: x@y.cn"},
            "target",
            "not an e-mail",
        ),
        ({"target": "ops@example.cn"}, "channel", "is required"),
        ({"channel": pb.SUBSCRIPTION_CHANNEL_EMAIL, "target": ""}, "target", "is required"),
        (
            {
                "channel": pb.SUBSCRIPTION_CHANNEL_EMAIL,
                "target": "ops@example.cn",
                "record_type": "tax.unknown.kind",
            },
            "record_type",
            "no route",
        ),
        (
            {
                "channel": pb.SUBSCRIPTION_CHANNEL_EMAIL,
                "target": "ops@example.cn",
                "declaration_number": "12",
            },
            "declaration_number",
            "",
        ),
        (
            {"channel": pb.SUBSCRIPTION_CHANNEL_EMAIL, "target": "ops@example.cn", "events": [9]},
            "events[0]",
            "is one of",
        ),
    ],
)
def test_a_bad_subscription_is_refused_naming_the_field_and_stores_nothing(
    hub: RunningHub, clock: ManualClock, fields: dict[str, Any], field: str, words: str
) -> None:
    """INVALID_ARGUMENT with a violation for the field; no table changed."""
    before = table_counts(hub)
    with pytest.raises(grpc.RpcError) as refused:
        subscribe(hub, clock, **fields)
    code, _, _, violations = error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations and words in violations[field]
    assert table_counts(hub) == before


def test_subscriptions_are_the_enterprises_own(hub: RunningHub, clock: ManualClock) -> None:
    """Another enterprise's subscription is NOT_FOUND for every RPC; a repeated request id subscribes once."""
    request_id = str(uuid.uuid4())
    mine = subscribe(
        hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_EMAIL, target="ops@example.cn", request_id=request_id
    )
    repeat = subscribe(
        hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_EMAIL, target="ops@example.cn", request_id=request_id
    )
    assert repeat.subscription_id == mine.subscription_id
    beta = bearer(clock, "enterprise", BETA)
    calls = [
        lambda: stub(hub).GetSubscription(
            pb.GetSubscriptionRequest(subscription_id=mine.subscription_id), metadata=beta
        ),
        lambda: stub(hub).EnableSubscription(
            pb.EnableSubscriptionRequest(subscription_id=mine.subscription_id), metadata=beta
        ),
        lambda: stub(hub).DeleteSubscription(
            pb.DeleteSubscriptionRequest(subscription_id=mine.subscription_id), metadata=beta
        ),
        lambda: stub(hub).ListNotificationAttempts(
            pb.ListNotificationAttemptsRequest(subscription_id=mine.subscription_id), metadata=beta
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert error_details(refused.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    assert not stub(hub).ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=beta).subscriptions
    alpha = bearer(clock, "enterprise", ALPHA)
    listed = stub(hub).ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=alpha).subscriptions
    assert [s.subscription_id for s in listed] == [mine.subscription_id]
    stub(hub).DeleteSubscription(
        pb.DeleteSubscriptionRequest(subscription_id=mine.subscription_id), metadata=alpha
    )
    assert not stub(hub).ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=alpha).subscriptions


def test_secure_mode_refuses_private_targets_when_made_and_when_sent(
    tmp_path: Path, clock: ManualClock, mailbox: Mailbox
) -> None:
    """On a secure hub: plain http and private, loopback or link-local literals are refused when
    subscribing; a name that resolves to a private address at send time is refused then, logged, not sent."""
    for url, words in (
        ("http://127.0.0.1:9/x", "plain http"),
        ("https://10.1.2.3/x", "loopback, private or link-local"),
        ("https://[::1]/x", "loopback, private or link-local"),
        ("https://169.254.169.254/latest", "loopback, private or link-local"),
        ("https://localhost/x", "loopback, private or link-local"),
    ):
        assert words in (check_webhook_url(url, secure=True) or ""), url
    assert check_webhook_url("https://hooks.hualian.example.cn/ackhub", secure=True) is None
    secure = start(tmp_path, clock, f"sqlite:///{tmp_path / 'secure.db'}", mailbox, auth="secure")
    try:
        with pytest.raises(grpc.RpcError) as refused:
            subscribe(
                secure, clock, channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK, target="https://192.168.1.20/hook"
            )
        assert "target" in error_details(refused.value)[3]
        subscribe(
            secure,
            clock,
            channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK,
            target="https://hooks.hualian.example.cn/a",
        )
    finally:
        secure.stop()

    # At send time (agencies answer over development metadata here, so the sender is made secure by hand).
    hub = start(tmp_path, clock, f"sqlite:///{tmp_path / 'hub.db'}", mailbox)
    try:
        made = subscribe(
            hub,
            clock,
            channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK,
            target="https://hooks.hualian.example.cn/ackhub",
        )
        resolved: list[str] = []

        def rebinding(url: str, secure: bool) -> Resolved:  # the name now points inside the hub's network
            resolved.append(url)
            address = ipaddress.ip_address("10.0.0.7")
            if secure and not is_public(address):
                raise TargetRefused(f"'hooks.hualian.example.cn' resolves to {address}, a non-public address")
            return Resolved("https", "hooks.hualian.example.cn", 443, str(address))

        assert hub.server.notifications is not None
        hub.server.notifications.secure = True
        hub.server.notifications.resolver = rebinding
        answered(hub, clock)
        sent = notify(hub).sent
        assert resolved and len(sent) == 4 and {o.outcome for o in sent} == {"REFUSED"}
        log = stub(hub).ListNotificationAttempts(
            pb.ListNotificationAttemptsRequest(subscription_id=made.subscription_id),
            metadata=bearer(clock, "enterprise", ALPHA),
        )
        assert len(log.attempts) == 4 and all("non-public address" in a.detail for a in log.attempts)
    finally:
        hub.stop()


def test_payload_is_json_with_the_standard_fields(
    hub: RunningHub, clock: ManualClock, endpoint: Endpoint
) -> None:
    """The body carries `type`, `timestamp` and `data` as Standard Webhooks recommends."""
    url = endpoint.start()
    subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK,
        target=url,
        events=[pb.SUBSCRIPTION_EVENT_RECEIVED],
    )
    answered(hub, clock)
    notify(hub)
    [seen] = endpoint.requests()
    body = json.loads(seen.body)
    assert set(body) == {"type", "timestamp", "data"} and body["type"] == "record.received"
    assert body["data"]["declaration_number"] == DECLARATION and body["data"]["subject_uscc"] == ALPHA


def test_delete_and_enable_honour_the_request_id(hub: RunningHub, clock: ManualClock) -> None:
    """DeleteSubscription and EnableSubscription with a request_id: the same request again answers the
    first answer (a repeated delete is not NOT_FOUND); the same id with another request is ALREADY_EXISTS
    and changes nothing."""
    alpha = bearer(clock, "enterprise", ALPHA)
    first = subscribe(hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_EMAIL, target="a@example.cn")
    second = subscribe(hub, clock, channel=pb.SUBSCRIPTION_CHANNEL_EMAIL, target="b@example.cn")

    enable_id = str(uuid.uuid4())
    enable = pb.EnableSubscriptionRequest(subscription_id=first.subscription_id, request_id=enable_id)
    answer = stub(hub).EnableSubscription(enable, metadata=alpha)
    assert stub(hub).EnableSubscription(enable, metadata=alpha) == answer
    with pytest.raises(grpc.RpcError) as reused:
        stub(hub).EnableSubscription(
            pb.EnableSubscriptionRequest(subscription_id=second.subscription_id, request_id=enable_id),
            metadata=alpha,
        )
    assert error_details(reused.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")

    delete_id = str(uuid.uuid4())
    delete = pb.DeleteSubscriptionRequest(subscription_id=first.subscription_id, request_id=delete_id)
    stub(hub).DeleteSubscription(delete, metadata=alpha)
    stub(hub).DeleteSubscription(delete, metadata=alpha)  # the first answer again, not NOT_FOUND
    with pytest.raises(grpc.RpcError) as reused:
        stub(hub).DeleteSubscription(
            pb.DeleteSubscriptionRequest(subscription_id=second.subscription_id, request_id=delete_id),
            metadata=alpha,
        )
    assert error_details(reused.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    listed = stub(hub).ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=alpha).subscriptions
    assert [s.subscription_id for s in listed] == [second.subscription_id]


def test_a_case_message_by_customs_reaches_the_enterprises_webhook_and_mailbox(
    hub: RunningHub, clock: ManualClock, endpoint: Endpoint, mailbox: Mailbox
) -> None:
    """Customs staff open a case about ALPHA's record over CaseService and write in it; ALPHA's webhook
    subscribed to CASE_MESSAGE hears `case.message` for the opening and for each message (Standard
    Webhooks headers, verified), with the case, record, declaration, author and text; its e-mail
    subscription gets the message in both languages; a subscription to ACCEPTED only, and BETA, hear
    nothing; a second pass sends nothing again, and the same notification keeps its webhook-id."""
    url = endpoint.start()
    made = subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_WEBHOOK,
        target=url,
        events=[pb.SUBSCRIPTION_EVENT_CASE_MESSAGE],
    )
    assert list(made.events) == [pb.SUBSCRIPTION_EVENT_CASE_MESSAGE]
    subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_EMAIL,
        target="export-desk@hualian.example.cn",
        events=[pb.SUBSCRIPTION_EVENT_CASE_MESSAGE],
    )
    subscribe(
        hub,
        clock,
        channel=pb.SUBSCRIPTION_CHANNEL_EMAIL,
        target="accepted-only@hualian.example.cn",
        events=[pb.SUBSCRIPTION_EVENT_ACCEPTED],
    )
    subscribe(hub, clock, uscc=BETA, channel=pb.SUBSCRIPTION_CHANNEL_EMAIL, target="beta@example.cn")
    record_id = publish(hub)
    cases = case_grpc.CaseServiceStub(hub.channel)
    customs = bearer(clock, "operator", "olga", jurisdiction="0202")
    case = cases.OpenCase(
        case_pb.OpenCaseRequest(
            kind=case_pb.CASE_KIND_OTHER,
            record=case_pb.RecordSubject(record_id=record_id),
            title="FX settlement query",
        ),
        metadata=customs,
    ).case
    cases.AddCaseMessage(
        case_pb.AddCaseMessageRequest(
            case_id=case.case_id, text="请补充外汇核销单 — please send the FX settlement form."
        ),
        metadata=customs,
    )
    sent = notify(hub).sent
    assert {o.outcome for o in sent} == {"DELIVERED"} and len(sent) == 4  # 2 webhooks, 2 e-mails
    seen = endpoint.requests()
    bodies = sorted(
        (Webhook(made.signing_secret).verify(s.body, s.headers) for s in seen),
        key=lambda b: int(b["data"]["audit_index"]),
    )  # sent side by side: in any order
    assert all({"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(s.headers) for s in seen)
    assert [(b["type"], b["data"]["change"]) for b in bodies] == [
        ("case.message", "opened"),
        ("case.message", "message"),
    ]
    message = bodies[1]["data"]
    assert message["case_id"] == case.case_id and message["record_id"] == record_id
    assert message["declaration_number"] == DECLARATION and message["subject_uscc"] == ALPHA
    assert message["author"] == "operator:olga" and message["event"] == "CASE_MESSAGE"
    assert message["text"] == "请补充外汇核销单 — please send the FX settlement form."
    assert bodies[0]["data"]["text"] == "FX settlement query" and message["case_kind"] == "OTHER"

    def subject(mail: Any) -> str:
        return " ".join(str(make_header(decode_header(str(mail["Subject"])))).split())

    [mail] = [m for m in mailbox.messages if "a message" in subject(m)]
    assert mail["To"] == "export-desk@hualian.example.cn"
    assert f"case {case.case_id}: a message from operator:olga" in subject(mail)
    assert f"案件{case.case_id}：operator:olga的新消息" in subject(mail).replace(
        " ", ""
    )  # (folding eats spaces)
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "请补充外汇核销单" in text and f"案件 {case.case_id}：operator:olga 的新消息" in text
    assert {m["To"] for m in mailbox.messages} == {"export-desk@hualian.example.cn"}

    again = notify(hub)
    assert again.announced == 0 and again.sent == [] and len(endpoint.requests()) == 2
    owner = bearer(clock, "enterprise", ALPHA)
    attempts = (
        stub(hub)
        .ListNotificationAttempts(
            pb.ListNotificationAttemptsRequest(subscription_id=made.subscription_id), metadata=owner
        )
        .attempts
    )
    assert {a.event for a in attempts} == {pb.SUBSCRIPTION_EVENT_CASE_MESSAGE}
    assert {a.notification_id for a in attempts} == {s.headers["webhook-id"] for s in seen}
