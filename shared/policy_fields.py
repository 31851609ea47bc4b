"""Field types every part of the policy uses: durations, names, the strict base model."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like '90s', '5m', '6h', '1d'."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 6h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}; use a number of seconds or 30s, 5m, 6h, 1d")
    if seconds < 0:
        raise ValueError("duration must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=_NAME)]


class Strict(BaseModel):
    """Unknown fields are errors; a parsed policy never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_Strict = Strict  # the name the policy modules use
