"""Cases in the enterprise portal over HTTP (no browser): open one from the record's page (a double submit
opens one), follow it and answer, withdraw and reopen it; another enterprise neither sees nor touches it;
bad input, a closed case and a refused action get a page that names the field or the reason — never a
500 — and store nothing."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from ackhub.core.clock import ManualClock
from ackhub.hub.store.cases import CaseMessageRow, CaseRow
from ackhub.v1 import case_service_pb2 as case_pb
from ackhub.v1 import case_service_pb2_grpc as case_grpc
from tests.console_kit import console_url, operator_token
from tests.harness import RunningHub
from tests.portal_kit import enterprise_token, portal_url, publish, start_portal_hub
from tests.security_data import ALPHA, BETA, bearer

FX = "State Administration of Foreign Exchange"
DAY = 86_400_000


@pytest.fixture(name="hub")
def fixture_hub(tmp_path: Path, clock: ManualClock, database_url: str) -> Iterator[RunningHub]:
    running = start_portal_hub(tmp_path, clock, database_url)
    try:
        yield running
    finally:
        running.stop()


def signed_in(hub: RunningHub, clock: ManualClock, uscc: str = ALPHA) -> httpx.Client:
    client = httpx.Client(base_url=portal_url(hub))
    answer = client.post("/signin", data={"token": enterprise_token(clock, uscc, ttl_s=3600)})
    assert answer.status_code == 303, answer.text
    return client


def hidden(page: str, form_id: str, name: str) -> str:
    """A hidden field's value in the form `form_id` of `page`."""
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S)
    assert form is not None, form_id
    found = re.search(rf'name="{name}" value="([^"]*)"', form.group(0))
    assert found is not None, (form_id, name)
    return found.group(1)


def main_text(page: str) -> str:
    """The page's <main>, unescaped, without tags."""
    body = page.split("<main>", 1)[1].split("</main>", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def counts(hub: RunningHub) -> tuple[int, int]:
    with hub.server.db.transaction() as session:
        return (
            session.exec(select(func.count()).select_from(CaseRow)).one(),
            session.exec(select(func.count()).select_from(CaseMessageRow)).one(),
        )


def open_form(client: httpx.Client, record_id: str) -> dict[str, str]:
    page = client.get(f"/records/{record_id}").text
    return {
        "csrf": hidden(page, "open-case", "csrf"),
        "request_id": hidden(page, "open-case", "request_id"),
    }


def open_case(client: httpx.Client, record_id: str, **fields: str) -> httpx.Response:
    data = {**open_form(client, record_id), "kind": "NOT_RECEIVED", "recipient": "fx", **fields}
    return client.post(f"/records/{record_id}/cases", data=data)


def case_id_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/portal/cases/([^?]+)\?done=\w+", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def act(client: httpx.Client, case_id: str, what: str, text: str, **extra: Any) -> httpx.Response:
    page = client.get(f"/cases/{case_id}").text
    form_id = {"message": "answer"}.get(what, what)
    data = {
        "csrf": hidden(page, form_id, "csrf"),
        "request_id": hidden(page, form_id, "request_id"),
        "text": text,
        **extra,
    }
    return client.post(f"/cases/{case_id}/{what}", data=data)


def test_open_follow_and_answer_a_case_from_the_record_page(hub: RunningHub, clock: ManualClock) -> None:
    """ALPHA opens NOT_RECEIVED against fx from its record's page — the form sent twice opens one case;
    the case page shows it awaiting fx with the evidence in plain words; fx answers over gRPC, ALPHA
    answers in the portal: the thread shows the three messages in order; the record page and "my cases"
    list the case."""
    record_id = publish(hub)
    client = signed_in(hub, clock)
    page = client.get(f"/records/{record_id}")
    assert "Cases about this record" in page.text and 'id="no-cases"' in page.text
    form = {
        **open_form(client, record_id),
        "kind": "NOT_RECEIVED",
        "recipient": "fx",
        "text": "SAFE says our export data never arrived.",
    }
    first = client.post(f"/records/{record_id}/cases", data=form)
    again = client.post(f"/records/{record_id}/cases", data=form)  # a double click
    case_id = case_id_of(first)
    assert case_id_of(again) == case_id and counts(hub) == (1, 1)

    shown = client.get(first.headers["location"].removeprefix("/portal"))
    text = main_text(shown.text)
    assert "The case is open. The agency concerned is asked to answer." in text
    assert "awaiting a party" in text and f"Awaiting {FX}" in " ".join(text.split())
    assert "you · the record's enterprise" in text and f"{FX} · received the record" in text
    assert "SAFE says our export data never arrived." in text
    assert "The record's delivery proof as of the opening is attached to the case" in text
    assert re.search(rf"{FX} (has signed no receipt|signed its receipt)|not yet sent to {FX}", text), text

    fx = case_grpc.CaseServiceStub(hub.channel)
    fx.AddCaseMessage(
        case_pb.AddCaseMessageRequest(case_id=case_id, text="Our gateway filed it in quarantine; released."),
        metadata=bearer(clock, "agency", "fx"),
    )
    answered = act(client, case_id, "message", "Thank you — the settlement went through.")
    assert answered.status_code == 303 and answered.headers["location"].endswith("?done=message")
    thread = client.get(answered.headers["location"].removeprefix("/portal")).text
    authors = re.findall(r'<article class="message[^"]*" id="message-[^"]+" data-author="([^"]+)"', thread)
    assert authors == [f"enterprise:{ALPHA}", "agency:fx", f"enterprise:{ALPHA}"]
    words = main_text(thread)
    assert words.index("never arrived") < words.index("quarantine") < words.index("settlement went")
    assert "Your message was added." in words
    assert "awaiting a party" in words  # fx answered: customs is awaited now; ALPHA's answer keeps that

    record_page = client.get(f"/records/{record_id}").text
    assert f'href="/portal/cases/{case_id}"' in record_page and 'data-state="AWAITING_PARTY"' in record_page
    timeline = main_text(record_page)  # the fx delivery's timeline carries the case, in words
    assert "you opened a case (see Cases below)" in timeline and f"{FX} wrote in the case" in timeline
    assert "tl." not in timeline
    mine = client.get("/cases")
    assert mine.status_code == 200 and re.findall(r'data-case="([^"]+)"', mine.text) == [case_id]
    assert 'href="/portal/cases" aria-current="page"' in mine.text
    none = client.get("/cases", params={"state": "RESOLVED"})
    assert none.status_code == 200 and not re.findall(r'data-case="', none.text)
    bad = client.get("/cases", params={"state": "LOST"})
    assert bad.status_code == 400 and "state: must be one of" in html.unescape(bad.text)
    bad = client.get("/cases", params={"page": "not-a-token"})
    assert bad.status_code == 400 and "page: is not a token this service issued" in html.unescape(bad.text)

    client.cookies.set("ackhub_lang", "zh")
    zh = main_text(client.get(f"/cases/{case_id}").text)
    assert "往来消息" in zh and "您 · 记录所属企业" in zh and "等待当事方答复" in zh


PDF = b"%PDF-1.4\n% the bank's settlement slip\n" + bytes(range(256)) * 4


def send_files(
    client: httpx.Client, case_id: str, files: list[tuple[str, bytes, str]], text: str = "see the files"
) -> httpx.Response:
    page = client.get(f"/cases/{case_id}").text
    data = {
        "csrf": hidden(page, "answer", "csrf"),
        "request_id": hidden(page, "answer", "request_id"),
        "text": text,
    }
    parts = [("attachment", (name, content, kind)) for name, content, kind in files]
    return client.post(f"/cases/{case_id}/message", data=data, files=parts)


def test_an_answer_carries_files_that_only_the_cases_parties_download(
    hub: RunningHub, clock: ManualClock
) -> None:
    """ALPHA answers its case with two files (one named in Chinese): the thread lists them, each downloads
    as the same bytes, as an attachment with its media type and never rendered; fx sees them over gRPC
    with the same SHA-256; BETA's download of them is 'not found'."""
    import hashlib

    record_id = publish(hub)
    alpha = signed_in(hub, clock)
    case_id = case_id_of(open_case(alpha, record_id, text="never arrived"))
    form = alpha.get(f"/cases/{case_id}").text
    assert 'enctype="multipart/form-data"' in form and 'type="file" name="attachment" multiple' in form
    assert "up to 5 files of at most 1024 KiB each (application/pdf," in html.unescape(form)
    note = "外汇结算单说明".encode()
    sent = send_files(
        alpha, case_id, [("slip.pdf", PDF, "application/pdf"), ("说明.txt", note, "text/plain")]
    )
    assert sent.status_code == 303, main_text(sent.text)
    thread = alpha.get(f"/cases/{case_id}").text
    links = re.findall(r'<a href="/portal(/cases/[^"]+/files/\d+)" download>([^<]+)</a>', thread)
    assert [name for _, name in links] == ["slip.pdf", "说明.txt"]
    for (link, _name), content, kind in zip(
        links, (PDF, note), ("application/pdf", "text/plain"), strict=True
    ):
        got = alpha.get(link)
        assert got.status_code == 200 and got.content == content
        assert got.headers["content-type"].startswith(kind)
        assert got.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in got.headers["content-security-policy"]
    assert "%E8%AF%B4%E6%98%8E.txt" in alpha.get(links[1][0]).headers["content-disposition"]
    assert alpha.get(links[0][0].replace("/files/0", "/files/2")).status_code == 404

    fx = case_grpc.CaseServiceStub(hub.channel)
    case = fx.GetCase(case_pb.GetCaseRequest(case_id=case_id), metadata=bearer(clock, "agency", "fx")).case
    files = [a for m in case.messages for a in m.attachments]
    assert [(a.filename, a.sha256) for a in files] == [
        ("slip.pdf", hashlib.sha256(PDF).hexdigest()),
        ("说明.txt", hashlib.sha256(note).hexdigest()),
    ]
    beta = signed_in(hub, clock, BETA)
    for link, _ in links:
        refused = beta.get(link)
        assert refused.status_code == 404 and refused.content not in (PDF, note)

    # customs, who decides the case, opens the file from the console's case page; an operator of another
    # office may not
    for office, status in (("0202", 200), ("5300", 404)):
        with httpx.Client(base_url=console_url(hub)) as console:
            signin = console.post(
                "/signin", data={"token": operator_token(clock, jurisdiction=office), "next": "/"}
            )
            assert signin.status_code == 303
            console_page = console.get(f"/cases/{case_id}").text
            found = re.findall(r'<a href="(/cases/[^"]+/files/\d+)" download>slip.pdf</a>', console_page)
            if status == 200:
                got = console.get(found[0])
                assert got.content == PDF and got.headers["content-disposition"].startswith("attachment;")
            else:
                assert not found and console.get(links[0][0]).status_code == 404


@pytest.mark.parametrize(
    ("files", "status", "said"),
    [
        (
            [("page.html", b"<script>alert(1)</script>", "text/html")],
            400,
            "file 1: 'text/html' is not allowed",
        ),
        (
            [("big.pdf", b"%" * (1024 * 1024 + 1), "application/pdf")],
            400,
            "file 1: is 1048577 bytes; the limit",
        ),
        ([(f"{n}.txt", b"x", "text/plain") for n in range(6)], 400, "files: has 6 files; the limit"),
        ([("empty.txt", b"", "text/plain")], 400, "file 1: is empty"),
        ([("huge.pdf", b"%" * (6 * 1024 * 1024), "application/pdf")], 413, "This form is too large"),
    ],
)
def test_a_refused_file_is_named_and_nothing_is_stored(
    hub: RunningHub, clock: ManualClock, files: list[tuple[str, bytes, str]], status: int, said: str
) -> None:
    """A file of a type not allowed, one over the size limit, too many, an empty one, or a form larger than
    every file at its limit: the page says which and why; no message is stored."""
    record_id = publish(hub)
    alpha = signed_in(hub, clock)
    case_id = case_id_of(open_case(alpha, record_id, text="never arrived"))
    before = counts(hub)
    answer = send_files(alpha, case_id, files)
    assert answer.status_code == status, answer.text
    assert said in main_text(answer.text), main_text(answer.text)
    assert counts(hub) == before


def test_another_enterprise_never_sees_or_touches_the_case(hub: RunningHub, clock: ManualClock) -> None:
    """BETA does not see ALPHA's case — not in its list, not by its id — cannot answer, withdraw or reopen
    it, nor open a case about ALPHA's record: each is 'not found', as for a case that does not exist,
    and nothing is stored."""
    record_id = publish(hub)
    alpha = signed_in(hub, clock)
    case_id = case_id_of(open_case(alpha, record_id, text="never arrived"))
    beta_record = publish(hub, BETA)
    beta = signed_in(hub, clock, BETA)
    before = counts(hub)
    assert not re.findall(r'data-case="', beta.get("/cases").text)
    assert case_id not in beta.get(f"/records/{beta_record}").text
    csrf = hidden(beta.get(f"/records/{beta_record}").text, "open-case", "csrf")
    for missing in (case_id, str(uuid.uuid4())):
        page = beta.get(f"/cases/{missing}")
        assert page.status_code == 404 and "No case of yours with that id." in page.text
        assert "never arrived" not in page.text
        for what in ("message", "withdraw", "reopen"):
            answer = beta.post(
                f"/cases/{missing}/{what}",
                data={"csrf": csrf, "text": "let me in", "request_id": str(uuid.uuid4())},
            )
            assert answer.status_code == 404 and "No case of yours with that id." in answer.text, what
    stolen = beta.post(
        f"/records/{record_id}/cases",
        data={"csrf": csrf, "kind": "OTHER", "text": "mine now", "request_id": str(uuid.uuid4())},
    )
    assert stolen.status_code == 404 and "No record of yours with that id." in stolen.text
    assert counts(hub) == before


@pytest.mark.parametrize(
    ("fields", "status", "said"),
    [
        ({"text": "   "}, 400, "The case was not opened: your message: is required"),
        ({"kind": "LOST"}, 400, "kind of case: must be one of NOT_RECEIVED"),
        ({"recipient": ""}, 400, "agency concerned: a NOT_RECEIVED case names the delivery"),
        ({"recipient": "commerce"}, 400, "agency concerned: the record has no delivery to 'commerce'"),
        ({"kind": "REJECTION_APPEAL"}, 409, "that agency did not reject the record (it is"),
        ({"text": "x" * 5000}, 400, "your message: is 5000 characters; the limit max_message_chars is"),
        ({"request_id": "twice"}, 400, "form id (reload the page): must be a UUID"),
        ({"csrf": "0" * 40}, 403, "The form expired"),
    ],
)
def test_a_refused_case_names_the_field_and_stores_nothing(
    hub: RunningHub, clock: ManualClock, fields: dict[str, str], status: int, said: str
) -> None:
    """Each bad form is answered by the record page (or the CSRF refusal) saying what is wrong, with the
    status of CaseBook's refusal; no case and no message are stored."""
    record_id = publish(hub)
    client = signed_in(hub, clock)
    before = counts(hub)
    answer = open_case(client, record_id, **{"text": "never arrived", **fields})
    assert answer.status_code == status, answer.text
    assert said in main_text(answer.text), main_text(answer.text)
    assert counts(hub) == before
    if status != 403:
        assert 'id="open-case-error"' in answer.text and '<details id="open-case-box" open' in answer.text


def test_withdraw_reopen_and_a_closed_case_refuses_answers(hub: RunningHub, clock: ManualClock) -> None:
    """ALPHA withdraws its case; an answer is then refused (closed), storing nothing; it reopens it within
    the window and answers; a case fx opened shows ALPHA no withdraw form and refuses its withdrawal;
    past the reopen window, reopening is refused with the time it was possible until."""
    record_id = publish(hub)
    client = signed_in(hub, clock)
    case_id = case_id_of(open_case(client, record_id, text="never arrived"))
    empty = act(client, case_id, "withdraw", "")
    assert empty.status_code == 400 and "The case was not withdrawn: reason: is required" in main_text(
        empty.text
    )
    page = client.get(f"/cases/{case_id}").text
    answer_csrf = hidden(page, "answer", "csrf")
    withdrawn = act(client, case_id, "withdraw", "fx found it")
    assert withdrawn.headers["location"].endswith("?done=withdraw")
    closed = client.get(f"/cases/{case_id}").text
    assert 'data-state="WITHDRAWN"' in closed and 'id="answer"' not in closed and 'id="reopen"' in closed
    before = counts(hub)
    late = client.post(
        f"/cases/{case_id}/message",
        data={"csrf": answer_csrf, "text": "one more thing", "request_id": str(uuid.uuid4())},
    )  # the answer form of the page as it was before the withdrawal
    assert late.status_code == 409
    assert "Your message was not added: the case is closed (WITHDRAWN)" in main_text(late.text)
    assert counts(hub) == before

    reopened = act(client, case_id, "reopen", "SAFE lost it again")
    assert reopened.headers["location"].endswith("?done=reopen")
    assert act(client, case_id, "message", "Details follow.").status_code == 303

    fx = case_grpc.CaseServiceStub(hub.channel)
    theirs = fx.OpenCase(
        case_pb.OpenCaseRequest(
            kind=case_pb.CASE_KIND_CONTENT_DISPUTE,
            record=case_pb.RecordSubject(record_id=record_id),
            text="The amount differs from our FX records.",
        ),
        metadata=bearer(clock, "agency", "fx"),
    ).case
    page = client.get(f"/cases/{theirs.case_id}").text
    assert 'id="withdraw"' not in page and "The amount differs" in page
    refused = client.post(
        f"/cases/{theirs.case_id}/withdraw",
        data={"csrf": answer_csrf, "text": "no", "request_id": str(uuid.uuid4())},
    )
    assert refused.status_code == 403
    assert "only the party that opened the case (agency:fx) or customs may withdraw it" in main_text(
        refused.text
    )

    assert act(client, case_id, "withdraw", "settled").status_code == 303
    clock.advance(hub.server.settings.cases.reopen_window + 1)
    client = signed_in(hub, clock)
    page = client.get(f"/cases/{case_id}").text
    assert 'id="reopen"' not in page  # the window passed: no form
    too_late = client.post(
        f"/cases/{case_id}/reopen",
        data={"csrf": _csrf(page), "text": "again", "request_id": str(uuid.uuid4())},
    )
    assert too_late.status_code == 409 and "that time has passed" in main_text(too_late.text)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


def test_my_cases_page_through_and_filter_by_state(hub: RunningHub, clock: ManualClock) -> None:
    """21 cases: 20 on the first page, 1 on the next, none lost or repeated; filtered by state, only the
    withdrawn one."""
    record_id = publish(hub)
    client = signed_in(hub, clock)
    opened = [
        case_id_of(open_case(client, record_id, kind="OTHER", recipient="", text=f"question {n}"))
        for n in range(21)
    ]
    act(client, opened[0], "withdraw", "answered by phone")
    first = client.get("/cases")
    found = re.findall(r'data-case="([^"]+)"', first.text)
    assert found == list(reversed(opened))[:20]
    more = re.search(r'href="([^"]+)" id="next-page"', first.text)
    assert more is not None
    second = client.get(html.unescape(more.group(1)).removeprefix("/portal"))
    assert re.findall(r'data-case="([^"]+)"', second.text) == [opened[0]]
    assert 'id="next-page"' not in second.text and 'id="first-page"' in second.text
    withdrawn = client.get("/cases", params={"state": "WITHDRAWN"})
    assert re.findall(r'data-case="([^"]+)"', withdrawn.text) == [opened[0]]
