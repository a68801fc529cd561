"""The audit console in a real browser: Playwright driving Debian's chromium (`make test` installs it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hub.clock import ManualClock
from hub.sdk.agency import Verdict, start_subscription
from tests.console_kit import console_url, escalate, operator_token, publish, start_console_hub
from tests.harness import Inbox, RunningHub, wait_for

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
