"""The push connectors the configuration asks for: one connector per kind, serving every agency that
chose it (`agencies[].connector`). The stream connector always exists; the hub builds it itself."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.connectors._push import PushConnector
from ackhub.connectors.filedrop import FiledropConnector
from ackhub.connectors.grpc_push import GrpcPushConnector
from ackhub.connectors.webhook import WebhookConnector
from ackhub.core.clock import Clock
from ackhub.hub.config import Settings


def push_connectors(
    settings: Settings, hub_key: Ed25519PrivateKey, hub_key_id: str, clock: Clock
) -> list[PushConnector]:
    """`hub_key` signs webhook requests (the audit checkpoint key, so agencies pin one hub key)."""
    built: list[PushConnector] = []
    receivers = {a.id: a.grpc_push for a in settings.agencies if a.grpc_push is not None}
    if receivers:
        built.append(GrpcPushConnector(receivers))
    hooks = {a.id: a.webhook for a in settings.agencies if a.webhook is not None}
    if hooks:
        built.append(WebhookConnector(hooks, hub_key, hub_key_id, clock))
    drops = {a.id: a.filedrop for a in settings.agencies if a.filedrop is not None}
    if drops:
        built.append(FiledropConnector(drops, clock))
    return built
