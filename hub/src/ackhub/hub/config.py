"""Settings: one TOML file (agencies, routes, notifiers, server), then `ACKHUB_*` environment overrides.

Durations are written as text (`"30s"`, `"10m"`) and held as milliseconds. `load_settings` reports every
problem at once as `ConfigError`, each with the key it concerns and why.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ackhub.audit.acks import load_public_key
from ackhub.connectors.config import Filedrop, GrpcPush, Webhook
from ackhub.core.errors import ConfigError
from ackhub.core.settings import DurationMs, Strict

AGENCY_ID = r"^[a-z][a-z0-9_-]{0,63}$"
RECORD_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class RetryPolicy(Strict):
    """Attempt n waits min(first_interval * multiplier^(n-1), max_interval) ± jitter for its acknowledgement."""

    first_interval: DurationMs = 5_000
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval: DurationMs = 300_000
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    max_attempts: int = Field(default=8, ge=1, le=1000)
    # The slower pace kept once a delivery is escalated; defaults to max_interval.
    escalated_interval: DurationMs | None = None

    @model_validator(mode="after")
    def _order(self) -> RetryPolicy:
        if self.first_interval == 0:
            raise ValueError("first_interval must be more than 0")
        if self.max_interval < self.first_interval:
            raise ValueError("max_interval must not be shorter than first_interval")
        return self


class EscalationStep(Strict):
    """A rung of the ladder: reached `after` the case opened; `notify` names notifiers ('log' or configured)."""

    after: DurationMs = 0
    notify: list[str] = Field(default_factory=lambda: ["log"])


class RouteRecipient(Strict):
    agency: str
    ack_level: Literal["RECEIVED", "BUSINESS"] = "BUSINESS"
    # The versions of the record type's schema this recipient takes (docs/schema-evolution.md); empty:
    # every version in the catalogue. A record of another version is refused at publish.
    schema_versions: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    deadline: DurationMs = 600_000
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    escalation: list[EscalationStep] = Field(default_factory=lambda: [EscalationStep()])

    @model_validator(mode="after")
    def _ladder(self) -> RouteRecipient:
        afters = [step.after for step in self.escalation]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in order of `after`")
        if not self.escalation:
            raise ValueError("the escalation ladder needs at least one step")
        return self


class Route(Strict):
    record_type: Annotated[str, Field(pattern=RECORD_TYPE)]
    # Agencies allowed to publish this type; empty allows any registered agency.
    publishers: list[str] = Field(default_factory=list)
    recipients: list[RouteRecipient] = Field(min_length=1)


class AgencyKey(Strict):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    # PEM `PUBLIC KEY` or base64 of the 32 raw Ed25519 bytes.
    public_key: str

    @field_validator("public_key")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            load_public_key(value)
        except ValueError as exc:
            raise ValueError(f"not an Ed25519 public key (PEM, or base64 of 32 bytes): {exc}") from None
        return value


class Agency(Strict):
    id: Annotated[str, Field(pattern=AGENCY_ID)]
    name: str
    kind: Literal["customs", "tax", "fx", "commerce", "origin", "other"]
    keys: list[AgencyKey] = Field(default_factory=list)
    # How deliveries reach the agency (connectors/); the matching table below configures it.
    connector: Literal["stream", "grpc_push", "webhook", "filedrop"] = "stream"
    grpc_push: GrpcPush | None = None
    webhook: Webhook | None = None
    filedrop: Filedrop | None = None

    @model_validator(mode="after")
    def _connector_settings(self) -> Agency:
        for name in ("grpc_push", "webhook", "filedrop"):
            if self.connector == name and getattr(self, name) is None:
                raise ValueError(f"connector {name!r} needs an [agencies.{name}] table")
            if self.connector != name and getattr(self, name) is not None:
                raise ValueError(f"[agencies.{name}] is set but connector is {self.connector!r}")
        return self


class Notifier(Strict):
    name: Annotated[str, Field(pattern=AGENCY_ID)]
    kind: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout: DurationMs = 5_000


class Breaker(Strict):
    """Consecutive unacknowledged attempts that open the circuit, and how long it then stays open."""

    failure_threshold: int = Field(default=5, ge=1)
    cooldown: DurationMs = 30_000
    max_cooldown: DurationMs = 600_000


class Server(Strict):
    listen: str = "127.0.0.1:7443"
    database_url: str = "sqlite:///ackhub.db"
    max_payload_bytes: int = Field(default=4 * 1024 * 1024, ge=1, le=64 * 1024 * 1024)
    stream_window: int = Field(default=64, ge=1, le=10_000)
    sweep_interval: DurationMs = 1_000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "development": callers may name themselves in metadata — loopback only (docs/security.md);
    # "secure": client certificates and JWTs only.
    auth: Literal["development", "secure"] = "development"
    # Allow "development" on a non-loopback address anyway (never in production).
    force_development_auth: bool = False
    # TLS: the hub's certificate chain and key (PEM); with `tls_client_ca_file`, every connection must
    # present a client certificate issued by that CA, and the agency is the certificate's common name.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None

    @model_validator(mode="after")
    def _safe(self) -> Server:
        if self.auth == "development" and not self.force_development_auth and not is_loopback(self.listen):
            raise ValueError(
                f"auth = 'development' trusts callers' own word; it is refused on {self.listen!r} "
                "(not loopback): use auth = 'secure', or set force_development_auth = true"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self


class Limits(Strict):
    """Per-principal request rate (token bucket; 0 turns it off) and request size limits."""

    requests_per_second: float = Field(default=200.0, ge=0)
    burst: int = Field(default=2_000, ge=1)
    max_string_bytes: int = Field(default=8192, ge=64)
    max_repeated_items: int = Field(default=10_000, ge=1)


def is_loopback(listen: str) -> bool:
    """Whether `host:port` listens on a loopback address only."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AuditWitness(Strict):
    """A partner agency's witness (C2SP tlog-witness): the hub sends it each new checkpoint to cosign."""

    name: str  # the witness's key name, as in its verifier key
    url: Annotated[str, Field(pattern=r"^https?://")]  # its submission prefix: <url>/add-checkpoint
    key: str  # its verifier key, an Ed25519 cosignature/v1 key: `ackhub witness keygen` prints it
    timeout: DurationMs = 5_000

    @model_validator(mode="after")
    def _key(self) -> AuditWitness:
        from ackhub.audit.note import COSIGNATURE_V1, NoteError, parse_vkey

        try:
            verifier = parse_vkey(self.key)
        except NoteError as error:
            raise ValueError(f"witness {self.name!r}: key: {error}") from None
        if verifier.kind != COSIGNATURE_V1:
            raise ValueError(f"witness {self.name!r}: key: not an Ed25519 cosignature/v1 key (type 0x04)")
        if verifier.name != self.name:
            raise ValueError(f"witness {self.name!r}: its key is named {verifier.name!r}")
        return self


class Audit(Strict):
    """The audit log's checkpoints. Without `signing_key_file` a development key is used: kept next to a
    SQLite database file (`<database>.audit-key.pem`, mode 0600, made on first start), or derived from the
    database URL otherwise (so hubs sharing one PostgreSQL agree); configure a key file in production."""

    signing_key_file: str | None = None  # PEM PKCS#8 Ed25519 private key, or the hex of its 32-byte seed
    # The log's name: first line of every checkpoint and its key name (no spaces, no '+'), ideally a
    # schema-less URL such as "customs.example/ackhub".
    origin: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s+]+$")] = "ackhub"
    checkpoint_interval: DurationMs = 60_000
    # How often new events become leaves. Often and in small transactions: a second's worth at a time held
    # SQLite's one database thread for 25-30 ms each second, the slowest 1 % of deliveries at 200/s.
    sequence_interval: DurationMs = 100
    witnesses: list[AuditWitness] = Field(default_factory=list)
    witness_retry_max: DurationMs = 60_000  # the longest wait between attempts at an unreachable witness

    @field_validator("witnesses")
    @classmethod
    def _distinct_witnesses(cls, value: list[AuditWitness]) -> list[AuditWitness]:
        seen: set[str] = set()
        for witness in value:
            if witness.name in seen:
                raise ValueError(f"witness name {witness.name!r} appears twice")
            seen.add(witness.name)
        return value

    @field_validator("sequence_interval")
    @classmethod
    def _sequence_interval(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("sequence_interval must be more than 0")
        return value


class Console(Strict):
    """The operators' web console (hub/console/, docs/console.md); off unless `[console]` is present."""

    listen: str = "127.0.0.1:7480"


class Portal(Strict):
    """The enterprise portal (hub/portal/, docs/portal.md), served under /portal beside the console (it needs
    `[console]`); off unless `[portal]` is present. Sign-in with an enterprise JWT (`token_signin`, for
    development and tests) and/or OpenID Connect (`oidc_*`: authorization code with PKCE)."""

    token_signin: bool = True
    session_lifetime: DurationMs = 8 * 3_600_000
    # OpenID Connect: the provider's issuer URL (its /.well-known/openid-configuration is read), this
    # hub's client id and secret at it, and the claim of the ID token that carries the enterprise's USCC.
    oidc_issuer: Annotated[str, Field(pattern=r"^https?://")] | None = None
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_uscc_claim: str = "uscc"
    oidc_scope: str = "openid profile"
    # The address people reach the portal at (for the QR code on a printed proof and the OIDC
    # redirect), e.g. "https://hub.example.cn/portal"; by default the address of the request.
    public_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # Trusted witness cosignatures the verification page requires (of [[audit.witnesses]]); 0 reports
    # the cosignatures it finds without requiring any (a proof fresher than the last cosigned checkpoint).
    witness_quorum: int = Field(default=0, ge=0)
    # Sign-in and proof-verification attempts per client address: a token bucket refilled at
    # `rate_per_minute`, holding at most `rate_burst`; shared through the database by every hub process.
    rate_per_minute: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=10, ge=1)
    max_proof_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _oidc(self) -> Portal:
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError("oidc_issuer needs oidc_client_id")
        return self


class Notifications(Strict):
    """Enterprises' subscriptions to changes of their records (hub/notifications/, docs/portal.md):
    Standard Webhooks and e-mail over SMTP."""

    # Webhook retries: the first wait, multiplied each time, never more than `retry_max_interval`.
    retry_first_interval: DurationMs = 5_000
    retry_multiplier: float = Field(default=2.0, ge=1.0)
    retry_max_interval: DurationMs = 3_600_000
    # An endpoint failing without a success for this long is disabled; the enterprise re-enables it.
    disable_after: DurationMs = 5 * 86_400_000
    timeout: DurationMs = 10_000
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = "ackhub@localhost"


class Auth(Strict):
    """Bearer JWTs (ackhub.hub.auth.jwt): keys by key id from `jwks_file` (re-read when it changes), or one
    Ed25519 key for tokens without key id. Issuer and audience apply to every token, whatever its role."""

    jwks_file: str | None = None
    enterprise_jwt_public_key: str | None = None  # PEM, or base64 of the 32 raw bytes
    enterprise_jwt_issuer: str = "ackhub-dev"
    enterprise_jwt_audience: str = "ackhub"
    max_token_lifetime: DurationMs = 86_400_000

    @field_validator("enterprise_jwt_public_key")
    @classmethod
    def _parse_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_public_key(value)
            except ValueError as exc:
                raise ValueError(f"not an Ed25519 public key (PEM, or base64 of 32 bytes): {exc}") from None
        return value


class IssuerKey(AgencyKey):
    """An issuer's signing key (its electronic specimen); permits issued after `revoked_after` do not count."""

    revoked_after: date | None = None


class PermitIssuer(Strict):
    """An authority whose permits the hub verifies (docs/permits.md)."""

    id: Annotated[str, Field(pattern=AGENCY_ID)]
    name: str = ""
    adapter: Annotated[str, Field(pattern=AGENCY_ID)]  # an adapter kind, e.g. "commerce", "origin"
    # The agency that registers this issuer's permits; by default the agency with the issuer's id.
    agency: str | None = None
    # Keys beyond the agency's own, e.g. a foreign issuing body's specimens.
    keys: list[IssuerKey] = Field(default_factory=list)
    registry_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    registry_timeout: DurationMs = 2_000

    @property
    def agency_id(self) -> str:
        return self.agency or self.id


class Permits(Strict):
    issuers: list[PermitIssuer] = Field(default_factory=list)
    # How long an answer of an issuer's registry (found or not found) is reused.
    registry_cache: DurationMs = 300_000
    # The agency in whose name usage records (draw-downs, releases) are published to issuers.
    usage_publisher: str = "customs"

    def issuer(self, issuer_id: str) -> PermitIssuer | None:
        return next((i for i in self.issuers if i.id == issuer_id), None)


CASE_KINDS = ("NOT_RECEIVED", "CONTENT_DISPUTE", "REJECTION_APPEAL", "OTHER")
CaseKindName = Literal["NOT_RECEIVED", "CONTENT_DISPUTE", "REJECTION_APPEAL", "OTHER"]


class Cases(Strict):
    """Cases between parties (hub/cases/, docs/cases.md): how long the awaited party has to answer, per kind;
    the ladder a missed answer climbs when the subject has none of its own (a record's delivery brings its
    route's); who hears about it; how long a closed case may be reopened; the limits of messages."""

    # A kind not named here has the default: 2 days for NOT_RECEIVED, 5 days for the others.
    deadlines: dict[CaseKindName, DurationMs] = Field(default_factory=dict)
    escalation: list[EscalationStep] = Field(default_factory=lambda: [EscalationStep()])
    # Notifiers of each party, by agency id (or `enterprise:<USCC>`): told when it misses a deadline.
    party_notifiers: dict[str, list[str]] = Field(default_factory=dict)
    reopen_window: DurationMs = 30 * 86_400_000
    max_message_chars: int = Field(default=4000, ge=1)
    max_attachments: int = Field(default=5, ge=0)
    max_attachment_bytes: int = Field(default=1_048_576, ge=1)
    attachment_types: list[str] = Field(
        default_factory=lambda: [
            "application/pdf",
            "application/json",
            "application/xml",
            "text/plain",
            "image/png",
            "image/jpeg",
        ]
    )

    @model_validator(mode="after")
    def _ladder(self) -> Cases:
        afters = [step.after for step in self.escalation]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in order of `after`")
        if not self.escalation:
            raise ValueError("the escalation ladder needs at least one step")
        return self

    def deadline(self, kind: str) -> int:
        """How long the awaited party has to answer a case of `kind`, in milliseconds."""
        default = 2 * 86_400_000 if kind == "NOT_RECEIVED" else 5 * 86_400_000
        return int(self.deadlines.get(kind, default))  # type: ignore[call-overload]


class Settings(Strict):
    server: Server = Field(default_factory=Server)
    permits: Permits = Field(default_factory=Permits)
    breaker: Breaker = Field(default_factory=Breaker)
    audit: Audit = Field(default_factory=Audit)
    auth: Auth = Field(default_factory=Auth)
    limits: Limits = Field(default_factory=Limits)
    console: Console | None = None
    portal: Portal | None = None
    notifications: Notifications = Field(default_factory=Notifications)
    agencies: list[Agency] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    notifiers: list[Notifier] = Field(default_factory=list)
    cases: Cases = Field(default_factory=Cases)

    def agency(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    def route(self, record_type: str) -> Route | None:
        return next((r for r in self.routes if r.record_type == record_type), None)


def _cross_references(settings: Settings) -> list[tuple[str, str]]:
    """Problems that need the whole file: duplicates and names that point nowhere."""
    problems: list[tuple[str, str]] = []
    agency_ids = [a.id for a in settings.agencies]
    for i, agency in enumerate(settings.agencies):
        if agency_ids.index(agency.id) != i:
            problems.append((f"agencies[{i}].id", f"agency {agency.id!r} is defined twice"))
        key_ids = [k.id for k in agency.keys]
        for j, key in enumerate(agency.keys):
            if key_ids.index(key.id) != j:
                problems.append((f"agencies[{i}].keys[{j}].id", f"key {key.id!r} is defined twice"))
    notifiers = {"log"} | {n.name for n in settings.notifiers}
    types = [r.record_type for r in settings.routes]
    for i, route in enumerate(settings.routes):
        where = f"routes[{i}]"
        if types.index(route.record_type) != i:
            problems.append((f"{where}.record_type", f"{route.record_type!r} has two routes"))
        for j, publisher in enumerate(route.publishers):
            if publisher not in agency_ids:
                problems.append((f"{where}.publishers[{j}]", f"unknown agency {publisher!r}"))
        seen: set[str] = set()
        for j, recipient in enumerate(route.recipients):
            if recipient.agency not in agency_ids:
                problems.append((f"{where}.recipients[{j}].agency", f"unknown agency {recipient.agency!r}"))
            elif recipient.agency in seen:
                problems.append((f"{where}.recipients[{j}].agency", f"{recipient.agency!r} is listed twice"))
            seen.add(recipient.agency)
            for k, step in enumerate(recipient.escalation):
                for m, name in enumerate(step.notify):
                    if name not in notifiers:
                        problems.append(
                            (
                                f"{where}.recipients[{j}].escalation[{k}].notify[{m}]",
                                f"unknown notifier {name!r} (known: {', '.join(sorted(notifiers))})",
                            )
                        )
    problems.extend(_permit_references(settings, agency_ids))
    for k, step in enumerate(settings.cases.escalation):
        problems.extend(
            (f"cases.escalation[{k}].notify[{m}]", f"unknown notifier {name!r}")
            for m, name in enumerate(step.notify)
            if name not in notifiers
        )
    for party, names in settings.cases.party_notifiers.items():
        problems.extend(
            (f"cases.party_notifiers.{party}[{m}]", f"unknown notifier {name!r}")
            for m, name in enumerate(names)
            if name not in notifiers
        )
    if settings.portal is not None and settings.console is None:
        problems.append(("portal", "the portal is served beside the console: add [console]"))
    return problems


def _permit_references(settings: Settings, agency_ids: list[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    issuer_ids = [i.id for i in settings.permits.issuers]
    for i, issuer in enumerate(settings.permits.issuers):
        where = f"permits.issuers[{i}]"
        if issuer_ids.index(issuer.id) != i:
            problems.append((f"{where}.id", f"issuer {issuer.id!r} is defined twice"))
        if issuer.agency_id not in agency_ids:
            field = "agency" if issuer.agency else "id"
            problems.append((f"{where}.{field}", f"unknown agency {issuer.agency_id!r}"))
    if settings.permits.issuers and settings.permits.usage_publisher not in agency_ids:
        problems.append(("permits.usage_publisher", f"unknown agency {settings.permits.usage_publisher!r}"))
    return problems


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not re.fullmatch(r"[a-z_]+", part):
            continue  # pydantic's names for validator branches, not keys of the file
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _environment_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`ACKHUB_<SERVER FIELD>` (e.g. ACKHUB_DATABASE_URL, ACKHUB_LISTEN) overrides `[server]`."""
    server = dict(data.get("server") or {})
    for name in Server.model_fields:
        value = environ.get(f"ACKHUB_{name.upper()}")
        if value is not None:
            server[name] = value
    return {**data, "server": server} if server else data


def parse_settings(data: dict[str, Any], source: str, environ: Mapping[str, str] | None = None) -> Settings:
    data = _environment_overrides(data, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            source, [(_location(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        ) from None
    problems = _cross_references(settings)
    if problems:
        raise ConfigError(source, problems)
    return settings


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(source, [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("(syntax)", str(exc))]) from None
    try:
        return parse_settings(data, source, environ)
    except ConfigError as error:
        raise ConfigError(source, _with_witness_lines(error.problems, text)) from None


def _with_witness_lines(problems: list[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    """Name the line of the `[[audit.witnesses]]` table a problem is in (tomllib keeps no positions)."""
    headers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[audit.witnesses]]"]
    named = []
    for where, why in problems:
        match = re.match(r"audit\.witnesses(?:\[(\d+)\])?", where)
        if match and headers:
            if match.group(1) is not None and int(match.group(1)) < len(headers):
                where = f"{where} (line {headers[int(match.group(1))]})"
            else:
                names = re.findall(r"'([^']*)' appears twice", why)
                lines = [
                    n for n, line in enumerate(text.splitlines(), 1) if names and f'"{names[0]}"' in line
                ]
                where = f"{where} (line {', '.join(map(str, lines[1:2] or headers))})"
        named.append((where, why))
    return named
