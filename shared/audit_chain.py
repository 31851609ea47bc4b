"""The audit log's hash chain: canonical hashing and verification, shared by every backend.

Each record's hash covers all its other fields, including ``seq`` and ``prev_hash`` (the hash
of the record before it), so editing, deleting, inserting or reordering records breaks the
chain at the first record affected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from shared.model import AuditRecord, VerifyResult

GENESIS = "0" * 64


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every field except ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def hash_fields(record: AuditRecord) -> dict[str, Any]:
    data = record.to_json()
    data.pop("hash", None)
    return data


def verify_chain(records: Iterable[AuditRecord]) -> VerifyResult:
    """Recompute the chain in seq order; name the first record that does not fit."""
    previous = GENESIS
    expected_seq = 1
    count = 0
    for record in records:
        count += 1
        if record.seq != expected_seq:
            return VerifyResult(
                False,
                count,
                record.seq,
                f"sequence gap or reorder: expected seq {expected_seq}, found {record.seq}",
            )
        if record.prev_hash != previous:
            return VerifyResult(
                False,
                count,
                record.seq,
                "prev_hash does not match the previous record's hash "
                "(a record was deleted, inserted or reordered)",
            )
        if record_hash(hash_fields(record)) != record.hash:
            return VerifyResult(
                False, count, record.seq, "content does not match its hash (the record was edited)"
            )
        previous = record.hash
        expected_seq += 1
    return VerifyResult(True, count)
