"""Customs itself (the General Administration of Customs): what it publishes to the other agencies.

Customs issues no permits here and needs no native-format mapping (the hub's own format is customs');
it brings the record types it publishes to the catalogue: a released export declaration, read by the tax
bureau (export tax refund) and the FX administration (export receipts verification).
"""

from __future__ import annotations

from collections.abc import Sequence

from ackhub.adapters._schemas import bundled
from ackhub.core.adapter import Adapter, RecordType, SchemaVersion

EXPORT_DECLARATION_RELEASED = "customs.export_declaration.released"


class CustomsAdapter(Adapter):
    kind = "customs"
    title = "General Administration of Customs"

    def record_types(self) -> Sequence[RecordType]:
        return ()

    def catalogue(self) -> Sequence[SchemaVersion]:
        return (bundled(EXPORT_DECLARATION_RELEASED, 1),)
