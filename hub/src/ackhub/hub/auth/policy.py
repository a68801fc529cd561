"""The authorization policy, in one place.

`RULES` says, for every RPC the hub serves, which roles may call it; `hub.api.guard.GuardInterceptor`
applies it to every call before any servicer runs, and refuses a method that has no entry. The checks
that need the request or a stored row (subscribe as yourself, only an issuer's agency registers its
permits, an enterprise sees only its own USCC, an operator only its jurisdiction) are the functions below;
the servicers, use cases and queries call them with the principal the interceptor bound (`caller()`).

Visibility of records:
- an agency: records it published or that are addressed to it (it has a delivery of them);
- an enterprise: records whose subject is its USCC;
- an operator: records in its jurisdiction — `HQ` sees all; otherwise the record's declaration number
  (18 digits, the first 4 the customs office code, the first 2 the customs district) must start with the
  operator's 2- or 4-digit code; records without a declaration number are for headquarters only;
- an administrator: all, like headquarters.
Something the caller may not see is NOT_FOUND, the same answer as something that does not exist.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true
from sqlmodel import col, select

from ackhub.core.errors import PermissionDenied, Unauthenticated
from ackhub.core.principal import Principal
from ackhub.hub.auth.identity import HEADQUARTERS
from ackhub.hub.store.cases import CasePartyRow, CaseRow
from ackhub.hub.store.models import DeliveryRow, EscalationRow, RecordRow

AGENCY = frozenset({"agency"})
STAFF = frozenset({"operator", "administrator"})
ANYONE = frozenset({"agency", "enterprise", "operator", "administrator"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    reason: str = ""  # the ErrorInfo reason for a caller in another role
    what: str = ""  # "only an agency may <what>"


_EXCHANGE = "/ackhub.v1.ExchangeService/"
_OPERATIONS = "/ackhub.v1.OperationsService/"
_PERMITS = "/ackhub.v1.PermitService/"
_TRACE = "/ackhub.v1.TraceService/"
_AUDIT = "/ackhub.v1.AuditService/"
_CATALOGUE = "/ackhub.v1.CatalogueService/"
_CASES = "/ackhub.v1.CaseService/"
_SUBSCRIPTIONS = "/ackhub.v1.SubscriptionService/"
_ESCALATIONS = Rule(STAFF, "OPERATOR_ONLY", "work escalations")
_AUDIT_EVENTS = Rule(STAFF, "OPERATOR_ONLY", "read audit events")
_TRACING = Rule(frozenset({"enterprise", "operator", "administrator"}), "ENTERPRISE_ONLY", "trace records")
# An enterprise's own subscriptions (ackhub.hub.notifications.subscriptions scopes every row to its USCC).
_SUBSCRIBING = Rule(frozenset({"enterprise"}), "ENTERPRISE_ONLY", "manage notification subscriptions")

RULES: dict[str, Rule] = {
    _EXCHANGE + "PublishRecord": Rule(AGENCY, "AGENCY_ONLY", "publish records"),
    _EXCHANGE + "PublishRecords": Rule(AGENCY, "AGENCY_ONLY", "publish records"),
    _EXCHANGE + "Subscribe": Rule(AGENCY, "AGENCY_ONLY", "subscribe"),
    _EXCHANGE + "AcknowledgeDelivery": Rule(AGENCY, "AGENCY_ONLY", "acknowledge deliveries"),
    _EXCHANGE + "GetRecord": Rule(ANYONE),  # rows filtered by `visible_deliveries`
    _EXCHANGE + "ListDeliveries": Rule(
        AGENCY | STAFF, "AGENCY_OR_OPERATOR_ONLY", "list deliveries (enterprises use TraceService)"
    ),
    _OPERATIONS + "ListEscalations": _ESCALATIONS,
    _OPERATIONS + "GetEscalation": _ESCALATIONS,
    _OPERATIONS + "ResolveEscalation": _ESCALATIONS,
    _OPERATIONS + "AddEscalationNote": _ESCALATIONS,
    _OPERATIONS + "RedeliverDelivery": _ESCALATIONS,
    _PERMITS + "CreatePermit": Rule(AGENCY, "NOT_ISSUER_AGENCY", "register permits"),  # + require_issuer
    _PERMITS + "AmendPermit": Rule(AGENCY, "NOT_ISSUER_AGENCY", "amend permits"),  # + require_issuer
    _PERMITS + "RevokePermit": Rule(AGENCY, "NOT_ISSUER_AGENCY", "revoke permits"),  # + require_issuer
    _PERMITS + "GetPermit": Rule(ANYONE),  # + require_holder
    _PERMITS + "VerifyPermit": Rule(ANYONE),  # + require_holder
    _PERMITS + "VerifyDeclaration": Rule(ANYONE),  # + require_holder
    _PERMITS + "DrawDownPermit": Rule(AGENCY, "CUSTOMS_ONLY", "draw down permits"),  # + require_customs
    _PERMITS + "ReleaseDrawDown": Rule(AGENCY | STAFF, "CUSTOMS_ONLY", "release draw-downs"),
    _TRACE + "ListRecords": _TRACING,
    _TRACE + "TraceRecord": _TRACING,
    _TRACE + "GetDeliveryProof": _TRACING,
    _AUDIT + "GetCheckpoint": Rule(ANYONE),  # a fresh one: require_staff
    _AUDIT + "GetConsistencyProof": Rule(ANYONE),
    _AUDIT + "GetInclusionProof": _AUDIT_EVENTS,
    _AUDIT + "ListAuditEvents": _AUDIT_EVENTS,
    _CATALOGUE + "ListRecordTypes": Rule(ANYONE),  # what a record type must contain is for every party
    _CATALOGUE + "GetRecordType": Rule(ANYONE),
    # Cases between parties: every role, on the cases it is a party to (`case_clause`, `may_see_case`).
    _CASES + "OpenCase": Rule(ANYONE),  # + the subject must be visible to the caller
    _CASES + "GetCase": Rule(ANYONE),
    _CASES + "ListCases": Rule(ANYONE),
    _CASES + "AddCaseMessage": Rule(ANYONE),
    _CASES + "WithdrawCase": Rule(ANYONE),  # + require_case_opener
    _CASES + "ReopenCase": Rule(ANYONE),
    _CASES + "ResolveCase": Rule(STAFF, "OPERATOR_ONLY", "resolve cases"),
    _CASES + "AddCaseParty": Rule(STAFF, "OPERATOR_ONLY", "add parties to cases"),
    _SUBSCRIPTIONS + "CreateSubscription": _SUBSCRIBING,
    _SUBSCRIPTIONS + "GetSubscription": _SUBSCRIBING,
    _SUBSCRIPTIONS + "ListSubscriptions": _SUBSCRIBING,
    _SUBSCRIPTIONS + "DeleteSubscription": _SUBSCRIBING,
    _SUBSCRIPTIONS + "EnableSubscription": _SUBSCRIBING,
    _SUBSCRIPTIONS + "ListNotificationAttempts": _SUBSCRIBING,
}
# Served without identity: they reveal nothing about records.
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("ackhub_caller")


def is_public(method: str) -> bool:
    return method.strip("/").split("/")[0] in PUBLIC_SERVICES


def rule(method: str) -> Rule:
    """The rule of `method`; a method without one is refused to everyone (fail closed)."""
    found = RULES.get(method)
    if found is None:
        raise PermissionDenied(
            f"{method[:128]} has no authorization policy",
            reason="NO_POLICY",
            metadata={"method": method[:128]},
        )
    return found


def authorize(method: str, principal: Principal) -> None:
    """PermissionDenied unless `principal`'s role may call `method`."""
    found = rule(method)
    if principal.kind not in found.roles:
        roles = " or ".join(sorted(found.roles))
        raise PermissionDenied(
            f"only {roles} callers may {found.what or 'call ' + method.rsplit('/', 1)[-1]}",
            reason=found.reason or "ROLE_NOT_ALLOWED",
            metadata={"caller": principal.actor, "method": method},
        )


def bind(principal: Principal) -> contextvars.Token[Principal]:
    return _CALLER.set(principal)


def caller() -> Principal:
    """The principal the interceptor authenticated and authorized for the current call."""
    try:
        return _CALLER.get()
    except LookupError:
        raise Unauthenticated("no authenticated caller for this call", reason="NO_IDENTITY") from None


# --- checks that need the request or a stored row -------------------------------------------------------


def require_same_agency(principal: Principal, agency_id: str) -> None:
    """An agency subscribes as itself only."""
    if principal.kind != "agency" or principal.id != agency_id:
        raise PermissionDenied(
            f"{principal.actor!r} cannot subscribe as {agency_id[:64]!r}",
            reason="NOT_THIS_AGENCY",
            metadata={"caller": principal.actor, "agency_id": agency_id[:64]},
        )


def require_holder(principal: Principal, uscc: str) -> None:
    """An enterprise verifies and sees only the permits it holds."""
    if principal.kind == "enterprise" and principal.id != uscc:
        raise PermissionDenied(
            f"{principal.actor} may only verify its own permits",
            reason="NOT_HOLDER",
            metadata={"caller": principal.actor, "uscc": uscc[:32]},
        )


def require_issuer(principal: Principal, issuer_agency: str, issuer: str, what: str = "register") -> None:
    """Only the issuer's own agency creates, amends or revokes its permits."""
    if principal.kind != "agency" or principal.id != issuer_agency:
        raise PermissionDenied(
            f"{principal.actor} may not {what} permits of issuer {issuer!r}",
            reason="NOT_ISSUER_AGENCY",
            metadata={"caller": principal.actor, "issuer": issuer},
        )


def require_customs(principal: Principal, is_customs: bool, what: str) -> None:
    """Draw-downs are customs' (an agency of kind `customs`)."""
    if principal.kind != "agency" or not is_customs:
        raise PermissionDenied(
            f"only customs may {what}", reason="CUSTOMS_ONLY", metadata={"caller": principal.actor}
        )


def require_releaser(principal: Principal, requested_by: str, draw_down_id: str) -> None:
    """A draw-down is released by whoever made it, or by staff."""
    if principal.kind not in STAFF and principal.actor != requested_by:
        raise PermissionDenied(
            f"{principal.actor} may not release a draw-down made by {requested_by}",
            reason="NOT_DRAWER",
            metadata={"caller": principal.actor, "draw_down_id": draw_down_id},
        )


def require_staff(principal: Principal, what: str) -> None:
    if principal.kind not in STAFF:
        raise PermissionDenied(
            f"only an operator may {what}", reason="OPERATOR_ONLY", metadata={"caller": principal.actor}
        )


# --- row-level visibility --------------------------------------------------------------------------------


def in_jurisdiction(principal: Principal, declaration_number: str | None) -> bool:
    """Headquarters and administrators see all; others the declarations of their district or office."""
    if principal.kind == "administrator" or principal.jurisdiction == HEADQUARTERS:
        return True
    return bool(principal.jurisdiction) and (declaration_number or "").startswith(principal.jurisdiction)


def visible_deliveries(
    principal: Principal, record: RecordRow, deliveries: Sequence[DeliveryRow]
) -> list[DeliveryRow] | None:
    """The deliveries of `record` the principal may see, or None if it may not see the record at all."""
    if principal.kind == "system":
        return list(deliveries)
    if principal.kind == "enterprise":
        return list(deliveries) if record.subject_uscc == principal.id else None
    if principal.kind == "agency":
        if principal.id == record.publisher:
            return list(deliveries)
        mine = [d for d in deliveries if d.recipient == principal.id]
        return mine or None
    if principal.kind in STAFF:
        return list(deliveries) if in_jurisdiction(principal, record.declaration_number) else None
    return None


def record_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL: the records (RecordRow) the principal may see."""
    if principal.kind == "system" or (principal.kind in STAFF and in_jurisdiction(principal, "")):
        return true()
    if principal.kind == "enterprise":
        return col(RecordRow.subject_uscc) == principal.id
    if principal.kind == "agency":
        addressed = select(DeliveryRow.record_id).where(DeliveryRow.recipient == principal.id)
        return or_(col(RecordRow.publisher) == principal.id, col(RecordRow.id).in_(addressed))
    if principal.kind in STAFF and principal.jurisdiction:
        return col(RecordRow.declaration_number).startswith(principal.jurisdiction, autoescape=True)
    return false()


def _records_in_jurisdiction(principal: Principal) -> Any:
    return select(RecordRow.id).where(record_clause(principal))


def delivery_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL: the deliveries (DeliveryRow) the principal may list."""
    if principal.kind == "agency":
        return or_(col(DeliveryRow.recipient) == principal.id, col(DeliveryRow.publisher) == principal.id)
    if principal.kind == "system" or (principal.kind in STAFF and in_jurisdiction(principal, "")):
        return true()
    if principal.kind in STAFF:
        return col(DeliveryRow.record_id).in_(_records_in_jurisdiction(principal))
    return false()


def escalation_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL: the escalation cases (EscalationRow) the principal may see and work."""
    if principal.kind == "system" or (principal.kind in STAFF and in_jurisdiction(principal, "")):
        return true()
    if principal.kind in STAFF:
        return and_(col(EscalationRow.record_id).in_(_records_in_jurisdiction(principal)))
    return false()


# --- cases between parties (hub/cases/) ------------------------------------------------------------------


def party_of(principal: Principal) -> str:
    """How a case names the principal as a party: `agency:fx`, `enterprise:<USCC>`, `operator:alice`."""
    return principal.actor


def customs_party(declaration_number: str) -> str:
    """The customs office a subject belongs to, as a party: `customs:0202`, or `customs:HQ` without one."""
    return f"customs:{declaration_number[:4]}" if len(declaration_number) >= 4 else f"customs:{HEADQUARTERS}"


def may_see_case(principal: Principal, case: CaseRow, parties: Sequence[str]) -> bool:
    """Agencies and enterprises: the cases naming them; operators: their jurisdiction's (the declaration's
    office, or a `customs:<office>` party in it) and those they are a party to; headquarters,
    administrators and the hub itself: all."""
    if principal.kind == "system" or (principal.kind in STAFF and in_jurisdiction(principal, "")):
        return True
    if principal.kind in STAFF and (
        in_jurisdiction(principal, case.declaration_number or None)
        or any(
            in_jurisdiction(principal, p.removeprefix("customs:"))
            for p in parties
            if p.startswith("customs:")
        )
    ):
        return True
    return party_of(principal) in parties


def case_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL: the cases (CaseRow) the principal may see; the same rule as `may_see_case`."""
    if principal.kind == "system" or (principal.kind in STAFF and in_jurisdiction(principal, "")):
        return true()
    named = col(CaseRow.id).in_(select(CasePartyRow.case_id).where(CasePartyRow.party == party_of(principal)))
    if principal.kind in STAFF and principal.jurisdiction:
        office = select(CasePartyRow.case_id).where(
            col(CasePartyRow.party).startswith(f"customs:{principal.jurisdiction}", autoescape=True)
        )
        return or_(
            named,
            col(CaseRow.declaration_number).startswith(principal.jurisdiction, autoescape=True),
            col(CaseRow.id).in_(office),
        )
    if principal.kind in ("agency", "enterprise") or principal.kind in STAFF:
        return named
    return false()


def require_case_opener(principal: Principal, case: CaseRow) -> None:
    """A case is withdrawn by the party that opened it, or by an operator."""
    if principal.kind not in STAFF and principal.actor != case.opened_by:
        raise PermissionDenied(
            f"{principal.actor} may not withdraw case {case.id!r}: only {case.opened_by} or an operator may",
            reason="NOT_CASE_OPENER",
            metadata={"caller": principal.actor, "case_id": case.id, "opened_by": case.opened_by},
        )
