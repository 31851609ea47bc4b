"""The audit log's hash chain: canonical hashing, sealing and verification, for every backend.

Each record's hash is the sha256 of the canonical JSON of all its other fields, ``seq`` and
``prev_hash`` (the previous record's hash) included; the first record's ``prev_hash`` is
:data:`GENESIS`. So editing any field, deleting, inserting or reordering records breaks the
chain at the first record affected. What a chain alone cannot show: records cut off the *end*,
or a rewrite that recomputes every later hash — anchor the newest hash elsewhere for that.

Canonical form: JSON with sorted keys, no spaces, non-JSON values as ``str``; ``time`` as UTC
ISO 8601 with microseconds (``2026-01-01T12:00:00.000000+00:00``); ``kind`` as its value.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _encode_string
from typing import Any, TypeVar

from shared.model import AuditEntry, AuditRecord, VerifyResult

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    """The one JSON text of ``value`` that hashing and storage use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def strict_canonical(value: Any) -> str | None:
    """``canonical(value)`` if it is strict JSON (no NaN or infinity), else None."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False
        )
    except (ValueError, TypeError, RecursionError):
        return None


def format_time(value: datetime) -> str:
    """UTC, always with microseconds, so equal instants give equal text and text sorts by time."""
    return _utc(value).isoformat(timespec="microseconds")


def record_hash(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of every field except ``hash``."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def hash_fields(record: AuditRecord) -> dict[str, Any]:
    """The record's fields as they are hashed: every field but ``hash``, in canonical form."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        if f.name in ("hash", "chain"):
            continue
        value = getattr(record, f.name)
        if isinstance(value, datetime):
            value = format_time(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        fields[f.name] = value
    return fields


def seal(entry: AuditEntry, *, seq: int, prev_hash: str, time: datetime) -> AuditRecord:
    """The record that follows ``prev_hash`` at ``seq``, with its hash.

    Evidence is normalised through canonical JSON (tuples become lists, other non-JSON values
    strings), so the stored record reads back equal to the one returned here.
    """
    return seal_fields(entry, seq=seq, prev_hash=prev_hash, time=time)[0]


def seal_fields(
    entry: AuditEntry, *, seq: int, prev_hash: str, time: datetime, chain: int = 0
) -> tuple[AuditRecord, dict[str, Any], str]:
    """:func:`seal`, also returning the hashed fields in canonical form and the evidence's
    canonical JSON, which backends store as they are (no second encoding).

    The hashed text is :func:`canonical` of the fields, written out key by key with the
    evidence's canonical text spliced in, so the evidence is encoded once per record
    (``tests/unit/test_audit_chain.py`` checks it against ``canonical`` over generated
    records)."""
    given = entry.evidence_json
    empty = given == "{}" or (given is None and type(entry.evidence) is dict and not entry.evidence)
    evidence_text = "{}" if empty else given if given is not None else canonical(entry.evidence)
    evidence: Any = {} if empty else json.loads(evidence_text)  # most records: no decoding
    utc = _utc(time)
    time_text = utc.isoformat(timespec="microseconds")
    kind = entry.kind.value
    fields: dict[str, Any] = {
        "seq": seq,
        "time": time_text,
        "kind": kind,
        "summary": entry.summary,
        "actor": entry.actor,
        "model": entry.model,
        "version": entry.version,
        "cycle": entry.cycle,
        "reason": entry.reason,
        "evidence": evidence,
        "caused_by": entry.caused_by,
        "prev_hash": prev_hash,
    }
    text = _hashed_text(entry, seq, time_text, evidence_text, prev_hash)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    record = AuditRecord(
        seq=seq,
        time=utc,
        kind=entry.kind,
        summary=entry.summary,
        actor=entry.actor,
        model=entry.model,
        version=entry.version,
        cycle=entry.cycle,
        reason=entry.reason,
        evidence=evidence,
        caused_by=entry.caused_by,
        prev_hash=prev_hash,
        hash=digest,
        chain=chain,
    )
    return record, fields, evidence_text


def _hashed_text(
    entry: AuditEntry, seq: int, time_text: str, evidence_text: str, prev_hash: str
) -> str:
    """``canonical`` of a record's hashed fields, key by key in sorted order, the evidence's
    canonical text spliced in as it is."""
    return "".join(
        (
            '{"actor":', _text(entry.actor),
            ',"caused_by":', _text(entry.caused_by),
            ',"cycle":', _text(entry.cycle),
            ',"evidence":', evidence_text,
            ',"kind":', _text(entry.kind.value),
            ',"model":', _text(entry.model),
            ',"prev_hash":', _text(prev_hash),
            ',"reason":', _text(entry.reason),
            ',"seq":', _text(seq),
            ',"summary":', _text(entry.summary),
            ',"time":', _text(time_text),
            ',"version":', _text(entry.version),
            "}",
        )
    )  # fmt: skip


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive audit time {value.isoformat()}: audit times are UTC-aware")
    return value.astimezone(UTC)


def _text(value: Any) -> str:
    """``canonical(value)``, with a shortcut for the types of an entry's own fields."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    return canonical(value)


def verify_chain(records: Iterable[AuditRecord]) -> VerifyResult:
    """Recompute the chain over ``records`` in stored (seq) order; name the first that does not
    fit. ``records`` in the result counts the records checked."""
    previous = GENESIS
    count = 0
    for record in records:
        count += 1
        if record.seq != count:
            return VerifyResult(
                False,
                count,
                record.seq,
                f"sequence broken: expected seq {count}, found {record.seq} "
                "(a record was deleted, inserted or moved)",
            )
        if record.prev_hash != previous:
            return VerifyResult(
                False,
                count,
                record.seq,
                "prev_hash does not match the previous record's hash "
                "(a record before it was deleted, inserted, replaced or reordered)",
            )
        try:
            actual = record_hash(hash_fields(record))
        except (TypeError, ValueError) as exc:
            return VerifyResult(False, count, record.seq, f"record cannot be hashed: {exc}")
        if actual != record.hash:
            return VerifyResult(
                False,
                count,
                record.seq,
                "content does not match its hash (the record was edited or forged)",
            )
        previous = record.hash
    return VerifyResult(True, count)


Row = TypeVar("Row")


def verify_rows(
    rows: Iterable[Row], decode: Callable[[Row], AuditRecord], seq_of: Callable[[Row], int]
) -> VerifyResult:
    """:func:`verify_chain` over stored rows in seq order, for every backend: a row that no
    longer decodes into a record counts as edited, and verification stops there."""
    unreadable: list[tuple[int, str]] = []

    def records() -> Iterator[AuditRecord]:
        for row in rows:
            try:
                yield decode(row)
            except (TypeError, ValueError) as exc:
                unreadable.append((seq_of(row), str(exc)))
                return

    result = verify_chain(records())
    if unreadable:
        seq, problem = unreadable[0]
        return VerifyResult(
            False,
            result.records + 1,
            seq,
            f"record cannot be read (the record was edited): {problem}",
        )
    return result
