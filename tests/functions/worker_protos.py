"""A stand-in for the Functions host's gRPC messages, as far as the worker library reads them.

The worker library (``azure_functions_runtime``) gets its ``protos`` module from the proxy
worker at start-up. Indexing only constructs ``BindingInfo``, ``RpcFunctionMetadata`` and
``RpcRetryOptions`` and compares binding directions with ``BindingInfo``'s enum values;
decoding an invocation's input reads ``ParameterBinding``/``TypedData``/``RpcHttp`` through
``WhichOneof``. Enum values are those of the host's ``FunctionRpc.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Message:
    """A proto message: keyword fields kept as attributes, for the worker to read back."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class BindingInfo(_Message):
    # Direction (``in`` is a Python keyword: the generated class has it as getattr only)
    out = 1
    inout = 2
    # DataType
    undefined = 0
    string = 1
    binary = 2
    stream = 3


setattr(BindingInfo, "in", 0)


class RpcFunctionMetadata(_Message):
    pass


class RpcRetryOptions(_Message):
    pass


@dataclass(frozen=True)
class RpcHttp:
    method: str
    url: str
    headers: dict[str, str]
    body: TypedData
    params: dict[str, str]  # route parameters
    query: dict[str, str]


@dataclass(frozen=True)
class TypedData:
    """One of ``string``, ``json``, ``bytes`` or ``http`` is set (a proto ``oneof data``)."""

    string: str | None = None
    json: str | None = None
    bytes: bytes | None = None
    http: RpcHttp | None = None

    def WhichOneof(self, group: str) -> str | None:  # the protobuf API's name
        assert group == "data"
        kinds = ("string", "json", "bytes", "http")
        return next((kind for kind in kinds if getattr(self, kind) is not None), None)


@dataclass(frozen=True)
class ParameterBinding:
    name: str
    data: TypedData

    def WhichOneof(self, group: str) -> str:
        assert group == "rpc_data"
        return "data"
