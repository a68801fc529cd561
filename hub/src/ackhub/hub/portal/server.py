"""Building the portal for the console's server: its sign-in methods from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ackhub.hub.auth.jwt import Tokens
from ackhub.hub.portal.app import Portal

if TYPE_CHECKING:
    from ackhub.hub.server import HubServer


def make_portal(hub: HubServer, secret: bytes, tokens: Tokens | None) -> Portal:
    settings = hub.settings.portal
    assert settings is not None
    oidc = None
    if settings.oidc_issuer:
        from ackhub.hub.portal.oidc import OidcClient

        oidc = OidcClient(settings)
    return Portal(hub, secret, tokens, oidc)
