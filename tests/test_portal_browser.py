"""The enterprise portal in a real browser: Playwright driving Debian's chromium, as for the console.
Sign-in, search, a record's timeline, the proof download and its printable summary, the public
verification page with a good and a tampered proof, in English and 中文."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from standardwebhooks.webhooks import Webhook

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from ackhub.v1 import case_service_pb2 as case_pb
from ackhub.v1 import case_service_pb2_grpc as case_grpc
from ackhub.v1 import exchange_service_pb2 as exchange_pb
from ackhub.v1 import types_pb2
from tests.harness import Inbox, RunningHub, wait_for
from tests.notify_kit import Endpoint, notify
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.portal_kit import enterprise_token, portal_url, publish, start_portal_hub
from tests.security_data import ALPHA, BETA, DECLARATION, bearer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make test installs it)")
SECOND = "020220260525641691"


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
    running = start_portal_hub(tmp_path, clock)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(name="page")
def fixture_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context that accepts downloads; a failing test leaves a screenshot."""
    context = browser.new_context(
        locale="en-US", viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
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


def answered(hub: RunningHub, clock: ManualClock) -> str:
    """A record of ALPHA's that tax receives then accepts and fx rejects (which escalates it); returns its id.
    Records of other declarations get no answer."""

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


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/records")
    expect(page).to_have_url(re.compile(r"/portal/signin\?next=/portal/records"))
    page.fill("#token-form textarea[name=token]", token)
    page.click("#token-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("My records")


def test_enterprise_signs_in_searches_follows_the_timeline_and_downloads_the_proof(
    hub: RunningHub, clock: ManualClock, page: Page, tmp_path: Path
) -> None:
    """Sign in with an enterprise token, find a record by declaration number, read its timeline in plain
    words, download its proof and open the printable summary with its QR code; then the same in 中文."""
    record_id = answered(hub, clock)
    other = publish(hub, declaration=SECOND)
    publish(hub, uscc=BETA)  # another enterprise's: never listed
    base = portal_url(hub)
    sign_in(page, base, enterprise_token(clock))
    expect(page.locator("#records tbody tr")).to_have_count(2)
    page.fill("#search input[name=declaration]", SECOND)
    page.click("#search button[type=submit]")
    expect(page.locator("#records tbody tr")).to_have_count(1)
    expect(page.locator(f"#records tr[data-record='{other}']")).to_be_visible()
    page.select_option("#search select[name=state]", "ACCEPTED")
    page.fill("#search input[name=declaration]", "")
    page.click("#search button[type=submit]")
    expect(page.locator("#records tbody tr")).to_have_count(1)
    row = page.locator(f"#records tr[data-record='{record_id}']")
    expect(row.locator("[data-agency=tax]")).to_have_text("State Taxation Administration · accepted")

    row.locator("a").click()
    expect(page).to_have_url(base + f"/records/{record_id}")
    tax = page.locator("#delivery-tax .steps")
    expect(tax).to_contain_text("Customs sent the record to the hub")
    expect(tax).to_contain_text(
        "Received by State Taxation Administration — its signed receipt is in the proof"
    )
    expect(tax).to_contain_text("Accepted by State Taxation Administration")
    fx = page.locator("#delivery-fx .steps")
    expect(fx).to_contain_text("Rejected by State Administration of Foreign Exchange: amount does not match")
    expect(fx).to_contain_text("Handed to the hub's staff to follow up: amount does not match")

    with page.expect_download() as download_info:
        page.click("#proof-json")
    saved = tmp_path / "proof.json"
    download_info.value.save_as(saved)
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert document["format"] == "ackhub-delivery-proof/v1"
    assert document["record"]["record_id"] == record_id

    page.click("#proof-print")
    expect(page.locator("#proof-sheet h1")).to_have_text("Delivery proof")
    qr = page.locator("#qr")
    expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml"))
    expect(qr).to_have_attribute("alt", re.compile(rf"/portal/verify\?record={record_id}&digest=sha256%3A"))
    expect(page.locator("#proof-recipients")).to_contain_text("ACCEPTED at")

    page.goto(base + f"/records/{record_id}")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_contain_text("记录")
    expect(page.locator("#delivery-tax .steps")).to_contain_text(
        "State Taxation Administration 已签收——签名回执载于证明中"
    )
    expect(page.locator("#delivery-fx .steps")).to_contain_text("已退回：amount does not match")
    page.click("#proof-links #proof-print")
    expect(page.locator("#proof-sheet h1")).to_have_text("送达证明")


def test_anyone_checks_a_good_and_a_tampered_proof_without_an_account(
    hub: RunningHub, clock: ManualClock, page: Page, browser: Browser, tmp_path: Path
) -> None:
    """The enterprise downloads a proof; a stranger (no session) uploads it and reads VERIFIED with what it
    proves; a copy whose declaration number was changed, pasted, reads NOT verified with the reason;
    a file that is not JSON gets a plain message. In 中文 too."""
    record_id = answered(hub, clock)
    base = portal_url(hub)
    sign_in(page, base, enterprise_token(clock))
    page.goto(base + f"/records/{record_id}")
    with page.expect_download() as download_info:
        page.click("#proof-json")
    good = tmp_path / "proof.json"
    download_info.value.save_as(good)

    stranger = browser.new_context(locale="en-US")
    try:
        visitor = stranger.new_page()
        visitor.goto(base + "/verify")
        expect(visitor.locator("#who")).to_have_count(0)
        visitor.set_input_files("#verify-form input[name=proof]", str(good))
        visitor.click("#verify-form button[type=submit]")
        expect(visitor.locator("#verdict-line")).to_have_text(
            "Verified: every signature and proof in the document checks out."
        )
        expect(visitor.locator("#proven")).to_contain_text(f"published record {record_id}")
        expect(visitor.locator("#proven")).to_contain_text("(tax) accepted record")

        tampered = good.read_text(encoding="utf-8").replace(
            '"declaration_number": "0202', '"declaration_number": "0303'
        )
        assert tampered != good.read_text(encoding="utf-8")
        visitor.fill("#verify-form textarea[name=text]", tampered)
        visitor.click("#verify-form button[type=submit]")
        expect(visitor.locator("#verdict-line")).to_have_text(
            "NOT verified: this proof must not be relied on."
        )
        expect(visitor.locator("#failures")).to_contain_text(
            "the document does not match what the hub logged in audit event"
        )
        expect(visitor.locator("#failures")).to_contain_text("(declaration_number)")
        expect(visitor.locator("#verdict")).not_to_contain_text("030320260525641690")

        not_json = tmp_path / "photo.json"
        not_json.write_bytes(b"\x89PNG\r\n\x1a\n not a proof")
        visitor.set_input_files("#verify-form input[name=proof]", str(not_json))
        visitor.click("#verify-form button[type=submit]")
        expect(visitor.locator("#verify-problem")).to_contain_text(
            "This is not a delivery proof: it is not JSON"
        )

        visitor.click("#lang-switch")
        expect(visitor.locator("h1")).to_have_text("核验送达证明")
        visitor.set_input_files("#verify-form input[name=proof]", str(good))
        visitor.click("#verify-form button[type=submit]")
        expect(visitor.locator("#verdict-line")).to_have_text("核验通过：文件中的每个签名和证明均有效。")
    finally:
        stranger.close()


def test_enterprise_subscribes_a_webhook_and_reads_its_delivery_log(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """A URL that is not https is refused naming the field and nothing is listed; a good one is listed
    with its signing secret; the accepted record is announced to it, signed, and the delivery log on the
    page says DELIVERED; in 中文 too."""
    endpoint = Endpoint()
    url = endpoint.start()
    try:
        base = portal_url(hub)
        sign_in(page, base, enterprise_token(clock))
        page.click("header nav a[href='/portal/subscriptions']")
        expect(page.locator("h1")).to_have_text("Notifications")
        page.fill("#subscribe input[name=target]", "ftp://hooks.hualian.example.cn/x")
        page.click("#subscribe button[type=submit]")
        expect(page.locator("#subscribe-error")).to_contain_text(
            "address: must be an https:// URL with a host"
        )
        expect(page.locator("#no-subscriptions")).to_be_visible()

        page.fill("#subscribe input[name=target]", url)
        page.check("#subscribe input[name=events][value=ACCEPTED]")
        page.click("#subscribe button[type=submit]")
        secret = page.locator("#secret").inner_text()
        assert secret.startswith("whsec_")
        expect(page.locator("section.subscription")).to_have_count(1)
        expect(page.locator("section.subscription")).to_contain_text("accepted")

        record_id = answered(hub, clock)
        notify(hub)
        [seen] = endpoint.requests()
        assert Webhook(secret).verify(seen.body, seen.headers)["data"]["record_id"] == record_id
        page.goto(base + "/subscriptions")
        row = page.locator("section.subscription table.log tr.outcome-DELIVERED")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(record_id)
        expect(row).to_contain_text("HTTP 204")

        page.click("#lang-switch")
        expect(page.locator("h1")).to_have_text("变更通知")
        expect(page.locator("section.subscription table.log")).to_contain_text("已受理")
        page.click("section.subscription button.delete")
        expect(page.locator("#done")).to_have_text("订阅已删除。")
        expect(page.locator("section.subscription")).to_have_count(0)
    finally:
        endpoint.stop()


def test_enterprise_opens_a_case_from_the_record_page_and_follows_the_thread(
    hub: RunningHub, clock: ManualClock, page: Page
) -> None:
    """From the record's page: open a NOT_RECEIVED case against fx (a missing text is refused naming the
    field first); the case page shows it awaiting fx with the evidence and the message; fx answers over
    CaseService; the enterprise answers and reads the thread in order; "My cases" lists it. Then the same
    in 中文: a second case from the record page, answered, and the thread in Chinese words."""
    record_id = answered(hub, clock)
    base = portal_url(hub)
    sign_in(page, base, enterprise_token(clock, ttl_s=3600))
    page.goto(base + f"/records/{record_id}")
    expect(page.locator("#cases h2")).to_have_text("Cases about this record")
    expect(page.locator("#no-cases")).to_be_visible()
    page.click("#open-case-box summary")
    page.select_option("#open-case select[name=kind]", "NOT_RECEIVED")
    page.select_option("#open-case select[name=recipient]", "fx")
    page.click("#open-case button[type=submit]")
    expect(page.locator("#open-case-error")).to_have_text(
        "The case was not opened: your message: is required"
    )
    page.fill("#open-case textarea[name=text]", "SAFE says our export data never arrived.")
    page.click("#open-case button[type=submit]")
    expect(page.locator("#done")).to_have_text("The case is open. The agency concerned is asked to answer.")
    expect(page.locator("#case-state")).to_have_text("awaiting a party")
    expect(page.locator("#case-awaiting")).to_contain_text("State Administration of Foreign Exchange")
    expect(page.locator("#case-evidence")).to_contain_text(
        "State Administration of Foreign Exchange signed that it rejected the record: amount does not match"
    )
    case_id = page.url.split("/cases/")[1].split("?")[0]

    cases = case_grpc.CaseServiceStub(hub.channel)
    cases.AddCaseMessage(
        case_pb.AddCaseMessageRequest(case_id=case_id, text="Received and rejected: the amount differs."),
        metadata=bearer(clock, "agency", "fx"),
    )
    page.reload()
    page.fill("#answer textarea[name=text]", "The amount was corrected on 5 December.")
    slip = b"%PDF-1.4\n% corrected settlement slip\n"
    page.set_input_files(
        "#answer input[type=file]",
        files=[{"name": "slip.pdf", "mimeType": "application/pdf", "buffer": slip}],
    )
    page.click("#answer button[type=submit]")
    expect(page.locator("#done")).to_have_text("Your message was added.")
    thread = page.locator("#case-thread article.message")
    expect(thread).to_have_count(3)
    expect(thread.nth(0)).to_contain_text("you")
    expect(thread.nth(0)).to_contain_text("never arrived")
    expect(thread.nth(1)).to_contain_text("State Administration of Foreign Exchange")
    expect(thread.nth(1)).to_contain_text("the amount differs")
    expect(thread.nth(2)).to_contain_text("corrected on 5 December")
    with page.expect_download() as download:
        thread.nth(2).locator("p.file a").click()
    assert download.value.suggested_filename == "slip.pdf"
    assert Path(download.value.path()).read_bytes() == slip

    page.click("header nav a[href='/portal/cases']")
    expect(page.locator("h1")).to_have_text("My cases")
    expect(page.locator(f"#my-cases tr[data-case='{case_id}']")).to_contain_text("not received")
    page.goto(base + f"/records/{record_id}")
    expect(page.locator(f"#record-cases tr[data-case='{case_id}']")).to_contain_text("awaiting a party")

    page.click("#lang-switch")
    expect(page.locator("#cases h2")).to_have_text("关于此记录的案件")
    page.click("#open-case-box summary")
    page.select_option("#open-case select[name=kind]", "REJECTION_APPEAL")
    page.select_option("#open-case select[name=recipient]", "fx")
    page.fill("#open-case textarea[name=text]", "我们对外汇局的退回提出申诉：金额已更正。")
    page.click("#open-case button[type=submit]")
    expect(page.locator("#done")).to_have_text("案件已开立，已要求相关机构答复。")
    expect(page.locator("h1")).to_have_text("案件: 退回申诉")
    expect(page.locator("#case-state")).to_have_text("等待当事方答复")
    page.fill("#answer textarea[name=text]", "附件随后补充。")
    page.set_input_files(
        "#answer input[type=file]",
        files=[{"name": "说明.html", "mimeType": "text/html", "buffer": b"<p>x</p>"}],
    )
    page.click("#answer button[type=submit]")
    expect(page.locator("#case-error")).to_contain_text("第 1 个文件: 'text/html' is not allowed")
    expect(page.locator("#answer textarea[name=text]")).to_have_value("附件随后补充。")
    page.click("#answer button[type=submit]")  # the refused file is not sent again
    expect(page.locator("#done")).to_have_text("您的消息已添加。")
    thread = page.locator("#case-thread article.message")
    expect(thread).to_have_count(2)
    expect(thread.nth(0)).to_contain_text("金额已更正")
    expect(thread.nth(1)).to_contain_text("附件随后补充")
    expect(page.locator("#case-history")).to_contain_text("您 开立了案件")
    page.click("header nav a[href='/portal/cases']")
    expect(page.locator("h1")).to_have_text("我的案件")
    expect(page.locator("#my-cases tbody tr")).to_have_count(2)


def test_enterprise_signs_in_with_its_account_through_openid_connect(
    tmp_path: Path, clock: ManualClock, page: Page
) -> None:
    """The browser goes to the provider and back (authorization code with PKCE) and lands on its records,
    signed in as the USCC of its ID token."""
    provider = Provider({"sub": "li.wei@hualian", "uscc": ALPHA})
    provider.start()
    (tmp_path / "oidc").mkdir()
    hub = start_portal_hub(
        tmp_path / "oidc",
        clock,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    try:
        record_id = publish(hub)
        base = portal_url(hub)
        page.goto(base + "/records")
        page.click("#oidc-signin")
        expect(page).to_have_url(base + "/records")
        expect(page.locator("#who")).to_have_text(f"enterprise {ALPHA}")
        expect(page.locator(f"#records tr[data-record='{record_id}']")).to_be_visible()
    finally:
        hub.stop()
        provider.stop()


def test_screenshots_for_the_docs(hub: RunningHub, clock: ManualClock, page: Page, tmp_path: Path) -> None:
    """The pages docs/portal.md shows, as PNGs in test-artifacts/ (copied to docs/img/ by hand): records,
    a record with its cases, a case's thread, my cases, the proof, subscriptions, the verification page."""
    endpoint = Endpoint()
    url = endpoint.start()
    ARTIFACTS.mkdir(exist_ok=True)
    shots: list[Path] = []

    def shot(name: str) -> None:
        shots.append(ARTIFACTS / f"portal-{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

    try:
        base = portal_url(hub)
        sign_in(page, base, enterprise_token(clock))
        page.goto(base + "/subscriptions")
        page.fill("#subscribe input[name=target]", url)
        page.click("#subscribe button[type=submit]")
        record_id = answered(hub, clock)
        publish(hub, declaration=SECOND)
        notify(hub)
        page.goto(base + "/records")
        shot("records")
        page.goto(base + f"/records/{record_id}")
        page.click("#open-case-box summary")
        page.select_option("#open-case select[name=recipient]", "fx")
        page.fill("#open-case textarea[name=text]", "SAFE says our export data never arrived.")
        page.click("#open-case button[type=submit]")
        case_id = page.url.split("/cases/")[1].split("?")[0]
        case_grpc.CaseServiceStub(hub.channel).AddCaseMessage(
            case_pb.AddCaseMessageRequest(case_id=case_id, text="Received and rejected: the amount differs."),
            metadata=bearer(clock, "agency", "fx"),
        )
        page.goto(base + f"/cases/{case_id}")
        page.fill("#answer textarea[name=text]", "The amount was corrected on 5 December.")
        page.set_input_files(
            "#answer input[type=file]",
            files=[
                {"name": "settlement-slip.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n" * 90}
            ],
        )
        page.click("#answer button[type=submit]")
        expect(page.locator("#case-thread article.message")).to_have_count(3)
        shot("case")
        page.goto(base + "/cases")
        shot("cases")
        page.goto(base + f"/records/{record_id}")
        page.click("#open-case-box summary")
        shot("record")
        with page.expect_download() as download_info:
            page.click("#proof-json")
        good = tmp_path / "proof.json"
        download_info.value.save_as(good)
        page.goto(base + f"/records/{record_id}/proof")
        shot("proof")
        page.goto(base + "/subscriptions")
        shot("subscriptions")
        page.goto(base + "/verify")
        page.set_input_files("#verify-form input[name=proof]", str(good))
        page.click("#verify-form button[type=submit]")
        expect(page.locator("#verdict-line")).to_contain_text("Verified")
        shot("verify-good")
        page.click("#lang-switch")
        tampered = good.read_text(encoding="utf-8").replace(
            '"declaration_number": "0202', '"declaration_number": "0303'
        )
        page.fill("#verify-form textarea[name=text]", tampered)
        page.click("#verify-form button[type=submit]")
        expect(page.locator("#verdict-line")).to_contain_text("核验未通过")
        shot("verify-tampered-zh")
        page.goto(base + f"/records/{record_id}")
        shot("record-zh")
        page.goto(base + f"/cases/{case_id}")
        shot("case-zh")
    finally:
        endpoint.stop()
    assert all(s.stat().st_size > 10_000 for s in shots)
