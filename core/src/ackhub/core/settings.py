"""What configuration models share, the hub's and its plugins': strict models and durations written as text
(`"30s"`, `"10m"`) held as milliseconds."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ackhub.core.durations import parse_duration_ms


class Strict(BaseModel):
    """Unknown keys are errors, and a loaded model never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration_ms(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("write a duration as text, e.g. '30s' or '10m'")
    return value


DurationMs = Annotated[int, BeforeValidator(_duration), Field(ge=0)]
