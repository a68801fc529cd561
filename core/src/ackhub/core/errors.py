"""Domain errors. Each carries a canonical status name, an UPPER_SNAKE reason, metadata with every dynamic
value, and field violations for bad fields; `hub.api.errors` turns them into `google.rpc.Status` once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class AckhubError(Exception):
    """Root of every error the hub reports to a caller."""

    code = "INTERNAL"
    reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])


class InvalidArgument(AckhubError, ValueError):
    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(
            f"invalid request: {summary}",
            reason=reason,
            metadata={"fields": ",".join(v.field for v in violations)},
            violations=violations,
        )


class NotFound(AckhubError, LookupError):
    code = "NOT_FOUND"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(
            f"{kind} {ident!r} not found", reason=f"{kind.upper()}_NOT_FOUND", metadata={kind: ident}
        )


class AlreadyExists(AckhubError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(AckhubError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(AckhubError, PermissionError):
    code = "PERMISSION_DENIED"


class Unauthenticated(AckhubError):
    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class ResourceExhausted(AckhubError):
    """Too many requests: the caller should wait `retry_after_ms` (sent as google.rpc.RetryInfo)."""

    code = "RESOURCE_EXHAUSTED"
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_ms: int, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata={**(metadata or {}), "retry_after_ms": str(retry_after_ms)})
        self.retry_after_ms = retry_after_ms


class StoreUnavailable(AckhubError):
    """The database could not be reached or dropped the connection (a restart, a failover): the caller
    should try again after `retry_after_ms` (google.rpc.RetryInfo), with the same request id."""

    code = "UNAVAILABLE"
    reason = "STORE_UNAVAILABLE"

    def __init__(self, retry_after_ms: int = 1000) -> None:
        super().__init__(
            "the hub's database is unavailable; try again in a moment, with the same request_id",
            metadata={"retry_after_ms": str(retry_after_ms)},
        )
        self.retry_after_ms = retry_after_ms


class ConfigError(Exception):
    """A configuration file has problems; each is `(location, why)` and all are reported at once."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {source}: {where}: {why}" for where, why in problems)
        super().__init__(f"{len(problems)} problem(s) in the configuration:\n{lines}")


class StartupError(Exception):
    """The hub cannot start as configured (database unreachable, schema too old, a configuration that
    differs from the running processes'); the message says why and what to do. `ackhub serve` prints it
    and exits 2, without a traceback."""
