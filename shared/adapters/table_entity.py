"""Table Storage entities: legal keys from any text, long texts over numbered properties, and
the service's size limits checked before a write is sent (``shared.adapters.tables``)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from shared.errors import PermanentError

Entity = dict[str, Any]

# Table Storage limits (https://learn.microsoft.com/rest/api/storageservices/
# understanding-the-table-service-data-model): keys up to 1 KiB, string properties up to
# 64 KiB, an entity up to 1 MiB and 252 properties of our own.
MAX_KEY_CHARS = 400  # of base64url, well below 1 KiB in UTF-16
CHUNK_BYTES = 64_000  # UTF-16 bytes per string property (limit 65,536)
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252


def table_key(text: str) -> str:
    """A legal, injective PartitionKey/RowKey for any text.

    ``b`` + base64url of the UTF-8 bytes (no padding) while that is short, else ``h`` + the
    sha256 hex digest. Neither form contains a character Table Storage forbids in keys.
    """
    raw = text.encode("utf-8")
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    if len(encoded) <= MAX_KEY_CHARS:
        return "b" + encoded
    return "h" + hashlib.sha256(raw).hexdigest()


def odata(value: str | bool | int | float) -> str:
    """An OData literal for a filter. We format our own literals: the SDK's ``parameters``
    substitution turns the numbers 0 and 1 into ``false``/``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def _split_utf16(text: str) -> list[str]:
    data = text.encode("utf-16-le")
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + CHUNK_BYTES, len(data))
        if end < len(data) and 0xD8 <= data[end - 1] <= 0xDB:  # do not split a surrogate pair
            end -= 2
        parts.append(data[start:end].decode("utf-16-le"))
        start = end
    return parts


def put_text(entity: Entity, name: str, text: str | None) -> None:
    """Store ``text`` under ``name``, split over ``name_0``, ``name_1``... when it is long."""
    if text is None or len(text) * 4 <= CHUNK_BYTES:  # 4: the most UTF-16 bytes per character
        entity[name] = text
        return
    parts = _split_utf16(text)
    if len(parts) == 1:
        entity[name] = text
        return
    entity[f"{name}_parts"] = len(parts)
    for i, part in enumerate(parts):
        entity[f"{name}_{i}"] = part


def get_text(entity: Entity, name: str) -> str | None:
    """The text :func:`put_text` stored under ``name``."""
    parts = entity.get(f"{name}_parts")
    if parts is None:
        value = entity.get(name)
        return None if value is None else str(value)
    return "".join(str(entity[f"{name}_{i}"]) for i in range(int(plain(parts))))


def plain(value: Any) -> Any:
    """The Python value of a property (the SDK wraps Int64 values in ``EntityProperty``)."""
    return getattr(value, "value", value)


def entity_size(entity: Entity) -> int:
    """Bytes an entity takes in Table Storage, after the service's published formula."""
    size = 4
    count = 0
    for name, value in entity.items():
        if value is None:
            continue
        if name in ("PartitionKey", "RowKey"):
            size += len(str(value).encode("utf-16-le"))
            continue
        count += 1
        size += 8 + len(name) * 2
        if isinstance(value, str):
            size += 4 + len(value.encode("utf-16-le"))
        elif isinstance(value, bytes):
            size += 4 + len(value)
        else:
            size += 8
    return size if count <= MAX_PROPERTIES else MAX_ENTITY_BYTES + 1


def _check_size(entity: Entity, what: str) -> None:
    size = entity_size(entity)
    if size > MAX_ENTITY_BYTES:
        raise PermanentError(
            f"{what}: the entity takes {size} bytes (or too many properties); Table Storage "
            f"holds at most {MAX_ENTITY_BYTES} bytes and {MAX_PROPERTIES} properties per entity"
        )
