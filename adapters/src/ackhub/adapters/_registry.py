"""Fetching one permit from an issuer's own registry over HTTP: the part every registry-backed adapter
shares. The adapter names the path and how to read the issuer's native format."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from ackhub.core.adapter import IssuerUnreachable, RegistryAnswer


async def fetch_permit(
    client: httpx.AsyncClient,
    url: str,
    issuer: str,
    kind: str,
    parse: Callable[[Any, str], RegistryAnswer],
) -> RegistryAnswer | None:
    """`GET url`: 200 with the permit in the issuer's format, 404 when the issuer does not know it.
    Anything else — no answer, another status, an unreadable body — is `IssuerUnreachable`."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise IssuerUnreachable(issuer, f"{type(exc).__name__}: {exc}") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise IssuerUnreachable(issuer, f"HTTP {response.status_code}")
    try:
        answer = parse(json.loads(response.content), issuer)
    except ValueError as exc:
        raise IssuerUnreachable(issuer, f"unreadable answer: {exc}") from None
    return answer if answer.document.kind == kind else None
