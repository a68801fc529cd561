"""OpenID Connect sign-in to the portal (authorization code with PKCE) against a small provider on
loopback (tests/oidc_provider.py): the session is scoped to the USCC in the ID token; a forged state, a
replayed answer, an ID token without a USCC are refused and open no session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ackhub.core.clock import ManualClock
from ackhub.hub.portal.session import SESSION_COOKIE
from tests.harness import RunningHub
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.portal_kit import portal_url, publish, start_portal_hub
from tests.security_data import ALPHA, BETA


@pytest.fixture(name="provider")
def fixture_provider() -> Iterator[Provider]:
    provider = Provider({"sub": "li.wei@hualian", "uscc": ALPHA, "name": "Li Wei"})
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(name="hub")
def fixture_hub(tmp_path: Path, clock: ManualClock, provider: Provider) -> Iterator[RunningHub]:
    running = start_portal_hub(
        tmp_path,
        clock,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        token_signin=False,
    )
    try:
        yield running
    finally:
        running.stop()


def to_provider(client: httpx.Client, base: str) -> httpx.Response:
    """Press "sign in with your enterprise account": the hub's redirect to the provider's /authorize."""
    answer = client.get(base + "/oidc/start", params={"next": "/portal/records"})
    assert answer.status_code == 303, answer.text
    return answer


def test_sign_in_through_the_provider_with_pkce_scopes_the_session_to_the_uscc(
    hub: RunningHub, provider: Provider
) -> None:
    """The authorization request carries an S256 challenge, the token request the matching verifier (the
    provider checks it), and the portal then shows ALPHA's records and not BETA's."""
    mine, theirs = publish(hub, ALPHA), publish(hub, BETA)
    base = portal_url(hub)
    client = httpx.Client()
    authorize = to_provider(client, base).headers["location"]
    assert authorize.startswith(provider.url + "/authorize?")
    assert (
        "code_challenge_method=S256" in authorize and "code_challenge=" in authorize and "nonce=" in authorize
    )
    back = client.get(authorize)  # the provider signs the user in and sends the browser back
    assert back.status_code == 302
    landed = client.get(back.headers["location"])
    assert landed.status_code == 303 and landed.headers["location"] == "/portal/records", landed.text
    [token_request] = provider.token_requests
    assert len(token_request["code_verifier"]) >= 43
    page = client.get(base + "/records")
    assert page.status_code == 200
    assert f"enterprise {ALPHA}" in page.text and mine in page.text and theirs not in page.text
    replay = client.get(back.headers["location"])  # the same answer again: the pending sign-in is gone
    assert replay.status_code == 400


def test_a_forged_state_or_an_identity_without_uscc_opens_no_session(
    hub: RunningHub, provider: Provider
) -> None:
    """An answer whose state is not this browser's is refused before the code is used; an ID token whose
    user has no USCC is refused with the reason; neither leaves a session cookie."""
    base = portal_url(hub)
    client = httpx.Client()
    authorize = to_provider(client, base).headers["location"]
    back = client.get(authorize).headers["location"]
    forged = re.sub(r"state=[^&]+", "state=someone-elses", back)
    refused = client.get(forged)
    assert refused.status_code == 400 and "does not belong to this sign-in" in refused.text
    assert provider.token_requests == [] and SESSION_COOKIE not in client.cookies

    provider.claims = {"sub": "visitor"}
    client = httpx.Client()
    back = client.get(to_provider(client, base).headers["location"]).headers["location"]
    refused = client.get(back)
    assert refused.status_code == 401 and "USCC: no &#39;uscc&#39; claim" in refused.text
    assert SESSION_COOKIE not in client.cookies


def test_the_sign_in_page_offers_the_provider_and_no_token_form_when_turned_off(hub: RunningHub) -> None:
    """With `token_signin = false` only the provider's button is offered, and a pasted token is refused."""
    page = httpx.get(portal_url(hub) + "/signin")
    assert 'id="oidc-signin"' in page.text and 'id="token-form"' not in page.text
    assert httpx.post(portal_url(hub) + "/signin", data={"token": "x"}).status_code == 403
