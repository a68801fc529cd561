"""Each push connector's configuration, as an agency's `[agencies.<kind>]` table gives it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ackhub.core.settings import DurationMs, Strict


class GrpcPush(Strict):
    """The hub calls `ackhub.v1.ReceiverService` hosted by the agency at `target` (host:port)."""

    target: Annotated[str, Field(min_length=1)]
    timeout: DurationMs = 10_000
    concurrency: int = Field(default=8, ge=1, le=1000)  # attempts in flight at once


class Webhook(Strict):
    """The hub POSTs each delivery, signed, to `url`; the 2xx answer carries the agency's signed receipt."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout: DurationMs = 10_000
    concurrency: int = Field(default=8, ge=1, le=1000)
    ca_file: str | None = None  # PEM bundle trusted for the agency's certificate (default: system CAs)


class Filedrop(Strict):
    """Records are written into `outbox`; signed acknowledgement files are read back from `inbox`."""

    outbox: Annotated[str, Field(min_length=1)]
    inbox: Annotated[str, Field(min_length=1)]
    poll_interval: DurationMs = 5_000
    concurrency: int = Field(default=64, ge=1, le=100_000)  # files written but not yet acknowledged
