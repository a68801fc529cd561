"""The audit console in a real browser: Playwright driving Debian's chromium (`make test` installs it)."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import types_pb2
from tests.console_kit import console_url, escalate, operator_token, publish, start_console_hub
from tests.harness import Inbox, RunningHub, wait_for
from tests.security_data import bearer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Skipped only outside CI: there `make test` has installed chromium, and its absence must fail.
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
    """A fresh browser context; a failing test leaves a screenshot in test-artifacts/."""
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


def _sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/signin"))
    page.fill("textarea[name=token]", token)
    page.click("form[action='/signin'] button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")


def test_operator_watches_the_feed_opens_a_record_and_resolves_its_case(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """Sign in, see a new record on the live feed, open it, resolve its case, find it audited, switch to 中文."""
    base = console_url(hub)
    _sign_in(page, base, operator_token(clock))
    page.goto(base + "/feed")
    expect(page.locator("#feed-status")).to_have_text("live")
    record_id = publish(hub)
    row = page.locator(f"#feed tbody tr[data-kind='record.published'][data-record='{record_id}']")
    expect(row).to_be_visible(timeout=5_000)

    row.locator("a").click()
    expect(page).to_have_url(base + f"/records/{record_id}")
    expect(page.locator("#delivery-tax .timeline")).to_contain_text("PUBLISHED")

    case = escalate(hub, clock, record_id)
    page.goto(base + "/escalations")
    form = page.locator(f"#case-{case.id} form[action$='/resolve']")
    form.locator("input[name=reason]").fill("confirmed with the tax bureau by phone")
    form.locator("button").click()
    expect(page.locator("#done")).to_have_text("Case resolved.")

    page.goto(base + "/audit")
    resolved = page.locator("#audit-events tr", has_text="escalation.resolved")
    expect(resolved).to_contain_text("operator:alice")
    page.goto(base + f"/records/{record_id}")
    expect(page.locator("#delivery-tax .timeline")).to_contain_text("escalation resolved: confirmed with")

    page.click("#lang-switch")
    expect(page.locator("h1")).to_contain_text("记录")
    expect(page.locator("#delivery-tax h2")).to_contain_text("时间线")


def test_overview_shows_charts_after_traffic(hub: RunningHub, clock: ManualClock, page: Page) -> None:
    """The overview draws its charts as inline SVG (and keeps a screenshot for the docs)."""
    inbox = Inbox(lambda delivery: Verdict.received())
    start_subscription(hub.agency("fx", clock=clock), inbox)
    records = [publish(hub) for _ in range(3)]
    wait_for(lambda: len(inbox.ids()) == 3, what="fx receiving the three records")
    escalate(hub, clock, records[0])
    base = console_url(hub)
    _sign_in(page, base, operator_token(clock))
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("main")).to_contain_text("3 records in the last hour")
    expect(page.locator("main")).to_contain_text("Level 1: 3")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)


def test_expired_session_returns_to_sign_in(hub: RunningHub, clock: ManualClock, page: Page) -> None:
    """When the token in the cookie expires, the next page is the sign-in form with a notice."""
    base = console_url(hub)
    _sign_in(page, base, operator_token(clock, ttl_s=60))
    clock.advance(61_000)
    page.goto(base + "/agencies")
    expect(page).to_have_url(re.compile(r"/signin\?next=/agencies&expired=1"))
    expect(page.locator(".notice")).to_be_visible()


def _fx_deliveries(hub: RunningHub, clock: ManualClock, **filters: object) -> list[types_pb2.Delivery]:
    request = exchange_pb.ListDeliveriesRequest(recipient="fx", page_size=500, **filters)  # type: ignore[arg-type]
    metadata = bearer(clock, "operator", "alice", jurisdiction="HQ")
    return list(hub.exchange_stub.ListDeliveries(request, metadata=metadata).deliveries)


def test_agencies_backlog_counts_only_what_is_still_open(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """fx answers RECEIVED (which closes a delivery on its route) to all but two records: its backlog on the
    Agencies page is those two, the contract's open fx deliveries, in amber; the overview greys the rest."""
    silent = 2
    answered = itertools.count()
    inbox = Inbox(lambda delivery: Verdict.received() if next(answered) >= silent else None)
    start_subscription(hub.agency("fx", clock=clock), inbox)
    for _ in range(8):
        publish(hub)
    wait_for(lambda: len(inbox.ids()) == 8, what="fx receiving the eight records")
    received = types_pb2.DELIVERY_STATE_RECEIVED
    wait_for(lambda: len(_fx_deliveries(hub, clock, state=received)) == 8 - silent, what="six RECEIVED")
    outstanding = len(_fx_deliveries(hub, clock, closure=types_pb2.DELIVERY_CLOSURE_OPEN))
    assert outstanding == silent

    base = console_url(hub)
    _sign_in(page, base, operator_token(clock))
    page.goto(base + "/agencies")
    fx = page.locator("#agency-fx td.backlog .pill").first
    expect(fx).to_have_text(str(outstanding))
    expect(fx).to_have_css("background-color", "rgb(212, 146, 15)")  # waiting: amber
    expect(page.locator("#agency-tax td.backlog .pill").first).to_have_text("8")  # tax has not answered

    page.goto(base + "/")
    states = page.locator("svg.chart").nth(1)
    expect(states.locator("rect[data-meaning='closed']")).to_have_attribute("fill", "#8a8f99")
    expect(states).to_contain_text("closed · RECEIVED")
    expect(states).to_contain_text("waiting · SENT")
    page.click("#lang-switch")
    expect(page.locator("svg.chart").nth(1)).to_contain_text("已办结 · RECEIVED")
    page.goto(base + "/agencies")
    expect(page.locator("#agencies th").nth(5)).to_have_text("积压（未办结投递）")
    expect(page.locator("#agency-fx td.backlog .pill").first).to_have_text(str(outstanding))
