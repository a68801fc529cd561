"""The configured permit issuers, each with its adapter and its keys (the agency's own plus the issuer's
specimens with their revocation dates)."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from ackhub.adapters.loader import Adapters
from ackhub.audit.acks import load_public_key
from ackhub.core.adapter import Adapter, IssuerKey, PermitKind
from ackhub.core.permit_document import PermitDocument
from ackhub.hub.config import PermitIssuer, Settings

log = structlog.get_logger("ackhub.permits")


@dataclass(frozen=True)
class Issuer:
    config: PermitIssuer
    adapter: Adapter
    keys: dict[str, IssuerKey]

    checked: dict[tuple[bytes, str, bytes], str | None] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return self.config.id

    def signature_problem(self, document: PermitDocument, key_id: str, signature: bytes) -> str | None:
        """`adapter.check_signature`, remembered by (canonical text, key, signature): keys only change when
        the hub restarts, and any change to the document or signature is a different entry."""
        entry = (document.canonical_text(key_id), key_id, signature)
        if entry not in self.checked:
            if len(self.checked) > 10_000:
                self.checked.clear()
            self.checked[entry] = self.adapter.check_signature(document, key_id, signature, self.keys)
        return self.checked[entry]


class Issuers:
    """Issuers whose adapter is loaded; one whose adapter is missing or broken is logged and left out, so
    its permits verify as UNKNOWN_ISSUER."""

    def __init__(self, settings: Settings, adapters: Adapters) -> None:
        self.adapters = adapters
        self._issuers: dict[str, Issuer] = {}
        for config in settings.permits.issuers:
            adapter = adapters.get(config.adapter)
            if adapter is None:
                log.error(
                    "permits.issuer_without_adapter",
                    issuer=config.id,
                    adapter=config.adapter,
                    why=adapters.broken.get(config.adapter, "no such adapter is installed"),
                )
                continue
            keys: dict[str, IssuerKey] = {}
            agency = settings.agency(config.agency_id)
            for key in agency.keys if agency is not None and config.agency is None else []:
                keys[key.id] = IssuerKey(key.id, load_public_key(key.public_key))
            for specimen in config.keys:
                keys[specimen.id] = IssuerKey(
                    specimen.id, load_public_key(specimen.public_key), specimen.revoked_after
                )
            self._issuers[config.id] = Issuer(config, adapter, keys)

    def get(self, issuer_id: str) -> Issuer | None:
        return self._issuers.get(issuer_id)

    def kind(self, code: str) -> tuple[Adapter, PermitKind] | None:
        return self.adapters.permit_kind(code)

    def with_registry(self, kind: str) -> list[Issuer]:
        """Issuers whose adapter issues `kind` and that have a registry to ask."""
        found = self.adapters.permit_kind(kind)
        if found is None:
            return []
        return [i for i in self._issuers.values() if i.adapter is found[0] and i.config.registry_url]
