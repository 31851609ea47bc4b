"""Trigger values built the way the Python worker builds them on Azure.

The Functions host sends the worker each trigger's data as typed data (one event's JSON, the
HTTP request, the timer's status JSON). The worker wraps it in a ``Datum`` and decodes it with
the converter it picked when it indexed the function: the one azure-functions registers for
the binding type, or its generic binding (the data as it is) for a ``str`` or ``bytes``
parameter (``azure_functions_runtime`` ``functions.Registry`` and
``bindings.meta.from_incoming_proto``). The local host does the same with the same
converters, so a function gets here what it gets on Azure, including a ``func.CloudEvent`` for
a CloudEvents event whatever its annotation, and the converter's own errors.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from azure.functions.meta import Datum, get_binding_registry

EVENTGRID_TRIGGER = "eventGridTrigger"
HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
GENERIC = "generic"


class TriggerDecodeError(ValueError):
    """The converter refused the data: the worker would fail the invocation."""


def binding_for(function: Callable[..., Any], arg: str, binding: str) -> str:
    """The converter the worker decodes ``arg`` with: generic for ``str``/``bytes``."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: the worker would refuse the function
        hints = {}
    return GENERIC if hints.get(arg) in (str, bytes) else binding


def decode(binding: str, datum: Datum) -> Any:
    """What the worker passes for ``datum`` when it decodes with ``binding``'s converter."""
    if binding == GENERIC:  # the worker's GenericBinding.decode
        if datum.type in ("string", "bytes", "json"):
            return datum.value
        raise TriggerDecodeError(f"the generic binding cannot take {datum.type} data")
    converter = get_binding_registry().get(binding)
    if converter is None:
        raise LookupError(f"azure-functions has no converter for {binding!r} bindings")
    try:
        return converter.decode(datum, trigger_metadata={})
    except (ValueError, TypeError, NotImplementedError) as exc:
        detail = str(exc)  # may quote the untrusted data: keep it short
        detail = detail if len(detail) <= 200 else detail[:200] + "..."
        raise TriggerDecodeError(f"{binding}: {type(exc).__name__}: {detail}") from exc


def eventgrid_datum(event: Mapping[str, Any]) -> Datum:
    """One event of a delivery (either schema), as the host sends it: its JSON."""
    return Datum(json.dumps(event), "json")


def http_datum(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> Datum:
    """The request as the host's ``RpcHttp`` carries it (raw body bytes, as the worker asks)."""
    return Datum(
        {
            "method": Datum(method, "string"),
            "url": Datum(url, "string"),
            "headers": {k: Datum(v, "string") for k, v in headers.items()},
            "body": Datum(body, "bytes"),
            "params": {k: Datum(v, "string") for k, v in route_params.items()},
            "query": {k: Datum(v, "string") for k, v in query.items()},
        },
        "http",
    )


def timer_datum(*, past_due: bool, status: Mapping[str, str]) -> Datum:
    """The timer's JSON as the host sends it (``Schedule``, ``ScheduleStatus``, ``IsPastDue``)."""
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": dict(status)}
    return Datum(json.dumps({**info, "IsPastDue": past_due}, separators=(",", ":")), "json")
