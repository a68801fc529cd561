"""Where notifications may go. Checked twice: when a subscription is made (the URL's or address's form,
and in secure mode an IP literal that is private), and again at send time, on the addresses the host name
resolves to then — a name that pointed at a public address yesterday may point at the hub's own network
today (DNS rebinding), and the webhook is then sent to the address that was checked, not looked up again.

- Webhooks: `https://` only; plain `http://` only to a loopback host on a development hub
  (`[server] auth = "development"`). On a secure hub no loopback, private, link-local, shared, reserved or
  multicast target, by literal or by what the name resolves to.
- E-mail: one plain address (no display name, no comments, no line breaks), at most 254 characters."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_email(value: str) -> str | None:
    """Why `value` is not an e-mail address the hub sends to, or None."""
    if len(value) > 254:
        return "is longer than 254 characters"
    if not _EMAIL.match(value) or ".." in value or value.startswith(".") or ".@" in value:
        return f"is not an e-mail address (name@example.com): {value[:64]!r}"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    literal = _literal(host)
    return literal.is_loopback if literal is not None else host.lower() in _LOCAL_NAMES


def is_public(address: IPAddress) -> bool:
    """A global unicast address: not loopback, private, link-local, shared (100.64/10), reserved,
    multicast or unspecified; an IPv4-mapped IPv6 address is judged by its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_webhook_url(value: str, secure: bool) -> str | None:
    """Why `value` is not a webhook URL the hub accepts, or None (the form only; names are resolved at
    send time)."""
    if len(value) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    if any(c.isspace() or ord(c) < 32 for c in value):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return f"is not a URL: {error}"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if parts.scheme == "http" and (secure or not is_loopback_host(host)):
        return "must be https:// (plain http:// only to a loopback address on a development hub)"
    if port == 0:
        return "has port 0"
    if secure:
        literal = _literal(host)
        if host.lower() in _LOCAL_NAMES or (literal is not None and not is_public(literal)):
            return "must not point at a loopback, private or link-local address"
    return None


@dataclass(frozen=True)
class Resolved:
    """Where a webhook goes: the URL's parts and the address that was checked."""

    scheme: str
    host: str
    port: int
    address: str


class TargetRefused(Exception):
    """The hub will not send to this target now (its name resolves to a forbidden address)."""


def resolve_webhook(url: str, secure: bool) -> Resolved:
    """Blocking: resolve the URL's host and check every address it has; TargetRefused otherwise."""
    why = check_webhook_url(url, secure)
    if why is not None:
        raise TargetRefused(f"the URL {why}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise TargetRefused(f"cannot resolve {host!r}: {error}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise TargetRefused(f"{host!r} has no address")
    for address in addresses:
        if secure and not is_public(address):
            raise TargetRefused(f"{host!r} resolves to {address}, a non-public address")
        if parts.scheme == "http" and not address.is_loopback:
            raise TargetRefused(f"plain http only to loopback; {host!r} resolves to {address}")
    return Resolved(parts.scheme, host, port, str(addresses[0]))
