"""The console's bilingual Cases page in a real browser (Playwright, Debian's chromium): an operator filters
cases by party, kind and state, reads the evidence, adds a message handing the turn to fx, resolves, and
reads the audited history in 中文."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.v1 import case_service_pb2 as pb
from ackhub.v1 import case_service_pb2_grpc as pb_grpc
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import types_pb2
from tests.console_kit import console_url, operator_token, publish, start_console_hub
from tests.harness import Inbox, RunningHub, wait_for
from tests.security_data import ALPHA, bearer
from tests.test_console_browser import ARGS, ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="no /usr/bin/chromium (make test installs it)"
)


@pytest.fixture(name="browser", scope="module")
def fixture_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="hub")
def fixture_hub(tmp_path: Path, clock: ManualClock) -> Iterator[RunningHub]:
    running = start_console_hub(tmp_path, clock)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(name="page")
def fixture_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()


def _case_against_fx(hub: RunningHub, clock: ManualClock) -> str:
    """fx signs RECEIVED for ALPHA's record; the exporter opens NOT_RECEIVED against fx over gRPC."""
    start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
    record_id = publish(hub)

    def fx_state() -> int:
        answer = hub.exchange_stub.GetRecord(
            exchange_pb.GetRecordRequest(record_id=record_id), metadata=hub.as_operator()
        )
        return next(d.state for d in answer.deliveries if d.recipient == "fx")

    wait_for(lambda: fx_state() == types_pb2.DELIVERY_STATE_RECEIVED, what="fx RECEIVED")
    stub = pb_grpc.CaseServiceStub(hub.channel)
    case = stub.OpenCase(
        pb.OpenCaseRequest(
            kind=pb.CASE_KIND_NOT_RECEIVED,
            record=pb.RecordSubject(record_id=record_id, recipient="fx"),
            title="SAFE says the export data never arrived",
            text="The FX settlement is stalled.",
        ),
        metadata=bearer(clock, "enterprise", ALPHA),
    ).case
    return str(case.case_id)


def test_operator_filters_answers_and_resolves_a_case(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """Filter by party, kind and state; the evidence names fx's signed RECEIVED; a message hands the turn to
    fx; resolving closes the case; the history shows each audited step, and the page speaks 中文."""
    case_id = _case_against_fx(hub, clock)
    base = console_url(hub)
    page.goto(base + "/")
    page.fill("textarea[name=token]", operator_token(clock, jurisdiction="0202", name="olga"))
    page.click("form[action='/signin'] button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")

    page.click("nav a[href='/cases']")
    expect(page.locator("h1")).to_have_text("Cases")
    expect(page.locator(f"#case-{case_id}")).to_be_visible()
    filters = page.locator("#case-filters")
    filters.locator("select[name=kind]").select_option("CONTENT_DISPUTE")
    filters.locator("button").click()
    expect(page.locator("#no-cases")).to_be_visible()
    filters.locator("input[name=party]").fill("agency:fx")
    filters.locator("select[name=kind]").select_option("NOT_RECEIVED")
    filters.locator("select[name=state]").select_option("AWAITING_PARTY")
    filters.locator("button").click()
    expect(page).to_have_url(re.compile(r"party=agency%3Afx&kind=NOT_RECEIVED&state=AWAITING_PARTY"))
    row = page.locator(f"#case-{case_id}")
    expect(row).to_contain_text("fx signed RECEIVED at")
    expect(row).to_contain_text("agency:fx")

    row.locator("a").click()
    expect(page.locator("#evidence-summary")).to_contain_text("with key fx-test-1")
    expect(page.locator("#case-parties")).to_contain_text("enterprise:" + ALPHA)
    form = page.locator("#add-message")
    form.locator("textarea[name=text]").fill(
        "fx: your signed RECEIVED is attached as evidence; please check your gateway."
    )
    form.locator("select[name=await_party]").select_option("agency:fx")
    form.locator("button").click()
    expect(page.locator("#done")).to_have_text("Message added.")
    expect(page.locator("#case-awaiting")).to_contain_text("agency:fx")
    expect(page.locator("#case-thread")).to_contain_text("please check your gateway")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-case.png"), full_page=True)

    resolve = page.locator("#resolve-case")
    resolve.locator("input[name=resolution]").fill("fx found it in quarantine")
    resolve.locator("button").click()
    expect(page.locator("#done")).to_have_text("Case resolved.")
    expect(page.locator("#case-state")).to_have_text("resolved")
    expect(page.locator("#case-history tr.kind-case\\.resolved")).to_contain_text("operator:olga")
    expect(page.locator("#add-message")).to_have_count(0)

    page.click("#case-facts a[href^='/records/']")
    expect(page.locator(f"#record-case-{case_id}")).to_contain_text("resolved")
    expect(page.locator("#delivery-fx .timeline")).to_contain_text("CASE_RESOLVED")
    page.goto(base + f"/cases/{case_id}")

    page.click("#lang-switch")
    expect(page.locator("h1")).to_contain_text("案件")
    expect(page.locator("#case-state")).to_have_text("已结案")
    page.goto(base + "/cases?state=RESOLVED")
    expect(page.locator(f"#case-{case_id}")).to_contain_text("已结案")


def test_a_case_outside_the_jurisdiction_is_not_shown(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """An operator of office 5300 sees no case of office 0202, and its page is refused like a missing one."""
    case_id = _case_against_fx(hub, clock)
    base = console_url(hub)
    page.goto(base + "/")
    page.fill("textarea[name=token]", operator_token(clock, jurisdiction="5300", name="oscar"))
    page.click("form[action='/signin'] button[type=submit]")
    page.goto(base + "/cases")
    expect(page.locator("#no-cases")).to_be_visible()
    response = page.goto(base + f"/cases/{case_id}")
    assert response is not None and response.status == 404
