"""The adapter interface: discovery through entry points (a broken adapter is named and the others load),
the permit rules of the commerce and origin adapters, the tax and FX record types, the canonical text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ackhub.adapters.commerce import (
    NUMBER_EXAMPLE,
    NUMBER_FORMAT,
    AutomaticImportLicence,
    CommerceAdapter,
    ImportLicence,
    LicenceUsage,
    add_months,
)
from ackhub.adapters.fx import ExportDeclarationForFx, FxVerification
from ackhub.adapters.loader import load
from ackhub.adapters.origin import DomesticCertificate, OriginAdapter, one_year
from ackhub.adapters.tax import RefundRegistration, ReleasedExportDeclaration
from ackhub.core.adapter import Adapter, IssuerKey, RecordType
from ackhub.core.permit_document import PermitLine, format_quantity, parse_quantity
from tests.harness import private_key
from tests.permit_data import certificate, licence


class NotAnAdapter:
    """Something registered in the group that is not an adapter."""


class WrongKind(Adapter):
    kind = "customs-x"
    title = "wrong kind"

    def record_types(self) -> Sequence[RecordType]:
        return ()


def _point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="ackhub.adapters")


def test_installed_entry_points_load_the_five_adapters() -> None:
    """The package declares commerce, customs, origin, tax and fx; each loads and says where it came from."""
    adapters = load()
    assert sorted(adapters.loaded) == ["commerce", "customs", "fx", "origin", "tax"] and adapters.broken == {}
    assert adapters.loaded["commerce"].source.startswith("ackhub.adapters.commerce:CommerceAdapter")
    assert "origin.foreign_certificate" in adapters.permit_kinds


def test_broken_adapters_are_reported_by_name_and_the_others_load() -> None:
    """A missing module, a non-adapter and a wrong kind are each reported with what is wrong."""
    adapters = load(
        [
            _point("commerce", "ackhub.adapters.commerce:CommerceAdapter"),
            _point("missing", "ackhub.adapters.no_such_module:Adapter"),
            _point("thing", "tests.test_adapters:NotAnAdapter"),
            _point("customs", "tests.test_adapters:WrongKind"),
        ]
    )
    assert list(adapters.loaded) == ["commerce"]
    assert "ModuleNotFoundError" in adapters.broken["missing"]
    assert "not a subclass of ackhub.core.adapter.Adapter" in adapters.broken["thing"]
    assert "'customs-x'" in adapters.broken["customs"]


def test_quantities_are_exact_thousandths() -> None:
    """Decimal quantities round-trip exactly; floats never appear."""
    assert parse_quantity("12.5") == 12_500 and parse_quantity("0.001") == 1
    assert format_quantity(12_500) == "12.5" and format_quantity(100_000) == "100"
    for bad in ("1e3", "-1", "1.2345", "", "1,5"):
        with pytest.raises(ValueError, match="decimal"):
            parse_quantity(bad)


def test_commerce_rules_uses_tolerance_and_validity() -> None:
    """One batch: 1 use; not one batch: 12 (automatic import: 6); bulk tolerance 5 %; calendar year
    (automatic import: 6 months)."""
    import_licence, automatic = ImportLicence(), AutomaticImportLicence()
    assert import_licence.rules(licence(multi_batch=False)).max_uses == 1
    assert import_licence.rules(licence()).max_uses == 12
    assert automatic.rules(licence(multi_batch=True)).max_uses == 6
    assert import_licence.rules(licence()).tolerance_permille == 50
    assert import_licence.rules(licence()).latest_valid_to == date(2026, 12, 31)
    assert automatic.rules(licence(valid_from=date(2026, 8, 31))).latest_valid_to == date(2027, 2, 27)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert import_licence.check_number("06-AA-204966") is None
    assert import_licence.check_number("06-aa-204966") is not None
    assert import_licence.validate(licence()) == []


def test_the_licence_number_docs_and_message_agree() -> None:
    """docs/permits.md and the refusal name the same format, what each part is, and the same example,
    which is itself a valid number; the example of a wrong one is refused."""
    docs = (Path(__file__).parent.parent / "docs" / "permits.md").read_text(encoding="utf-8")
    message = ImportLicence().check_number("26-aa-204966") or ""
    assert f"`{NUMBER_FORMAT}`" in docs and f"`{NUMBER_EXAMPLE}`" in docs
    for words in ("year of issue", "2 capital letters of the issuing office", "6-digit serial"):
        assert words in docs and words in message
    assert NUMBER_FORMAT in message and NUMBER_EXAMPLE in message and "'26-aa-204966'" in message
    assert ImportLicence().check_number(NUMBER_EXAMPLE) is None


def test_origin_rules() -> None:
    """One shipment, one year from issue, at most 20 items of 6-digit HS codes with an origin criterion."""
    kind = DomesticCertificate()
    assert kind.validate(certificate()) == []
    assert kind.rules(certificate()).max_uses == 1 and one_year(date(2024, 2, 29)) == date(2025, 2, 28)
    many = certificate(
        lines=tuple(PermitLine(i, "610910", 1, "件", origin_criterion="RVC40") for i in range(1, 21))
    )
    assert kind.validate(many) == []
    fields = {v.field for v in kind.validate(certificate(multi_batch=True, exporter=""))}
    assert fields == {"multi_batch", "exporter"}


def test_signature_check_with_a_key_revoked_after_a_date() -> None:
    """Signatures verify over the canonical text; a key revoked after a date vouches only for earlier issues."""
    adapter = OriginAdapter()
    document = certificate(
        issue_date=date(2026, 4, 1), valid_from=date(2026, 4, 1), valid_to=date(2027, 3, 31)
    )
    signer = private_key("ccpit")
    signature = signer.sign(document.canonical_text("k1"))
    keys = {"k1": IssuerKey("k1", signer.public_key())}
    assert adapter.check_signature(document, "k1", signature, keys) is None
    revoked = {"k1": IssuerKey("k1", signer.public_key(), revoked_after=date(2026, 3, 31))}
    assert "revoked after 2026-03-31" in (adapter.check_signature(document, "k1", signature, revoked) or "")
    assert "not a registered key" in (adapter.check_signature(document, "k2", signature, keys) or "")
    assert "does not verify" in (adapter.check_signature(document, "k1", b"\0" * 64, keys) or "")


def test_canonical_text_of_a_licence() -> None:
    """The canonical text v1 is fixed: these exact bytes for the test licence (documented in docs/permits.md)."""
    text = licence().canonical_text("commerce-2026-01").decode()
    assert text == "\n".join(
        [
            "ackhub-permit/v1",
            "number=26-AA-204966",
            "kind=commerce.import_licence",
            "issuer=commerce",
            "key=commerce-2026-01",
            "version=1",
            "holder=91110000600037341L",
            "customs_office=0202",
            "issue_date=2026-01-05",
            "valid_from=2026-01-05",
            "valid_to=2026-12-31",
            "multi_batch=1",
            "exporter=",
            "importer=",
            "invoice=",
            "line=1;hs=87032342;quantity=100;unit=辆;bulk=0;criterion=;description=passenger cars, 1.5-2.0 l",
            "line=2;hs=26011100;quantity=500;unit=吨;bulk=1;criterion=;description=iron ore, non-agglomerated",
        ]
    )


def test_tax_record_types_validate_and_map() -> None:
    """The refund system's declaration and registration answers: native names, precise problems."""
    declaration = ReleasedExportDeclaration()
    native = declaration.to_native(
        {
            "declaration_number": "020220260525641690",
            "uscc": "91110000600037341L",
            "export_date": "20260615",
            "currency": "USD",
            "items": [{"code_ts": "6109100011", "g_qty": "2000", "fob": "12000.50"}],
        }
    )
    assert json.loads(native)["entry_id"] == "020220260525641690"
    assert declaration.validate(native) == []
    assert declaration.from_native(native)["uscc"] == "91110000600037341L"
    bad = json.loads(native)
    bad.update(entry_id="020220261525641690", trade_uscc="91310115MA1G4L1WXK", goods=[{"code_ts": "61", "g_qty": "-1",
               "fob": "1"}])  # fmt: skip
    fields = {v.field for v in declaration.validate(json.dumps(bad).encode())}
    assert fields == {"entry_id", "trade_uscc", "goods[0].code_ts", "goods[0].g_qty"}
    answer = RefundRegistration()
    refused = {"entry_id": "020220260525641690", "trade_uscc": "91110000600037341L", "reg_status": "REFUSED",
               "tax_org_code": "11101080000"}  # fmt: skip
    assert [v.field for v in answer.validate(json.dumps(refused).encode())] == ["reason"]


def test_fx_record_types_validate() -> None:
    """The FX system's declaration data and verification results have their own names and rules."""
    data = {"bgdh": "020220260525641690", "org_uscc": "91110000600037341L", "ckrq": "20260615", "bz": "usd",
            "jsfs": "CASH", "spxx": [{"hs": "6109100011", "sl": "1", "je": "10"}]}  # fmt: skip
    assert {v.field for v in ExportDeclarationForFx().validate(json.dumps(data).encode())} == {"bz", "jsfs"}
    result = {"bgdh": "020220260525641690", "org_uscc": "91110000600037341L", "hxjg": "MATCHED"}
    assert [v.field for v in FxVerification().validate(json.dumps(result).encode())] == ["jhje"]
    assert FxVerification().validate(b"[1]")[0].description == "must be a JSON object"


def test_usage_record_maps_to_the_licensing_systems_names() -> None:
    """A draw-down becomes the licensing system's usage report, with the supervision code as licence type."""
    payload = LicenceUsage().to_native(
        {"action": "DRAW", "number": "26-AA-204966", "kind": "commerce.import_licence",
         "declaration_number": "020220261525641690", "quantity": "3.5", "draw_down_id": "x"}
    )  # fmt: skip
    native = json.loads(payload)
    assert native["licence_type"] == "1" and native["qty"] == "3.5" and LicenceUsage().validate(payload) == []
    assert CommerceAdapter().usage_record_type() is not None
