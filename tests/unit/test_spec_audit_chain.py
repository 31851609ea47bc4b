"""What the audit log's hash chain promises: one canonical text per record, and verification
names the first record that was edited, deleted, inserted, reordered or cannot be read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.audit_chain import (
    GENESIS,
    canonical,
    format_time,
    hash_fields,
    record_hash,
    seal,
    seal_fields,
    verify_chain,
    verify_rows,
)
from shared.model import AuditEntry, AuditKind, AuditRecord

T = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def chain(n: int = 4) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        entry = AuditEntry(
            AuditKind.DECISION if i % 2 else AuditKind.ACTION,
            f"step {i}",
            actor="alice" if i == 1 else "system",
            model=["credit", "fraud"][i % 2],
            version=str(i + 3),
            cycle=f"c-{i}",
            reason=f"because {i}",
            evidence={"i": i, "tuple": (1, 2)},
            caused_by=f"event-{i}",
        )
        prev = records[-1].hash if records else GENESIS
        records.append(seal(entry, seq=i + 1, prev_hash=prev, time=T + timedelta(seconds=i)))
    return records


def test_a_sealed_chain_verifies() -> None:
    records = chain()
    result = verify_chain(records)
    assert (result.ok, result.records, result.first_bad_seq, result.problem) == (True, 4, None, "")
    assert records[0].prev_hash == GENESIS == "0" * 64
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]).ok and verify_chain([]).records == 0


def test_the_hash_is_sha256_of_the_documented_canonical_json() -> None:
    entry = AuditEntry(AuditKind.ACTION, "promoted", model="credit", evidence={"b": 1, "a": (2,)})
    record, fields, evidence_text = seal_fields(entry, seq=7, prev_hash="ab" * 32, time=T)
    expected_fields = {
        "seq": 7,
        "time": "2026-03-01T09:30:00.000000+00:00",
        "kind": "action",
        "summary": "promoted",
        "actor": "system",
        "model": "credit",
        "version": None,
        "cycle": None,
        "reason": "",
        "evidence": {"a": [2], "b": 1},
        "caused_by": None,
        "prev_hash": "ab" * 32,
    }
    assert fields == expected_fields
    assert evidence_text == '{"a":[2],"b":1}'
    text = json.dumps(expected_fields, sort_keys=True, separators=(",", ":"))
    assert record.hash == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert record_hash(hash_fields(record)) == record.hash
    assert record.evidence == {"a": [2], "b": 1}  # reads back as stored
    assert record.time == T and record.kind is AuditKind.ACTION


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ([1, "x"], '[1,"x"]'),
        ({"t": datetime(2026, 1, 1, tzinfo=UTC)}, '{"t":"2026-01-01 00:00:00+00:00"}'),
        ({"s": {3}}, '{"s":"{3}"}'),
    ],
)
def test_canonical_json(value: Any, text: str) -> None:
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 1, 12, tzinfo=UTC), "2026-01-01T12:00:00.000000+00:00"),
        (
            datetime(2026, 1, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-01T12:00:00.000005+00:00",
        ),
    ],
)
def test_times_are_utc_with_microseconds(moment: datetime, text: str) -> None:
    assert format_time(moment) == text


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive audit time 2026-01-01T00:00:00"):
        format_time(datetime(2026, 1, 1))


def test_the_hashed_fields_leave_out_only_the_hash() -> None:
    record = chain(1)[0]
    fields = hash_fields(record)
    # which chain holds the record is structural (where it is stored), not hashed content
    assert set(fields) == {f.name for f in dataclasses.fields(record)} - {"hash", "chain"}
    assert fields["kind"] == "action" and fields["time"] == "2026-03-01T09:30:00.000000+00:00"
    assert record_hash({**fields, "hash": "anything"}) == record_hash(fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("summary", "nothing happened"),
        ("actor", "mallory"),
        ("model", "fraud"),
        ("version", "99"),
        ("cycle", "c-x"),
        ("reason", "edited"),
        ("evidence", {"i": 2, "tuple": [1, 2], "extra": 1}),
        ("caused_by", "event-x"),
        ("kind", AuditKind.ERROR),
        ("time", T + timedelta(days=1)),
    ],
)
def test_editing_any_field_is_found_at_that_record(field: str, value: Any) -> None:
    records = chain()
    records[2] = dataclasses.replace(records[2], **{field: value})
    result = verify_chain(records)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 3, 3)
    assert result.problem == "content does not match its hash (the record was edited or forged)"


def test_a_deleted_record_breaks_the_sequence() -> None:
    records = chain()
    del records[1]
    result = verify_chain(records)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 2, 3)
    assert result.problem == (
        "sequence broken: expected seq 2, found 3 (a record was deleted, inserted or moved)"
    )


def test_a_replaced_record_with_a_valid_hash_breaks_the_link() -> None:
    records = chain()
    forged = seal(AuditEntry(AuditKind.DECISION, "forged"), seq=2, prev_hash="f" * 64, time=T)
    records[1] = forged
    result = verify_chain(records)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 2, 2)
    assert result.problem == (
        "prev_hash does not match the previous record's hash "
        "(a record before it was deleted, inserted, replaced or reordered)"
    )


def test_a_record_that_cannot_be_hashed_is_not_reported_intact() -> None:
    records = chain()
    records[1] = dataclasses.replace(records[1], time=datetime(2026, 3, 1, 9, 30))  # naive
    result = verify_chain(records)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 2, 2)
    assert result.problem.startswith("record cannot be hashed: naive audit time")


def test_circular_evidence_cannot_be_hashed() -> None:
    records = chain()
    loop: dict[str, Any] = {}
    loop["self"] = loop
    records[3] = dataclasses.replace(records[3], evidence=loop)
    result = verify_chain(records)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem.startswith("record cannot be hashed: ")


def test_rows_that_no_longer_decode_are_counted_as_edited_and_stop_verification() -> None:
    records = chain()
    rows: list[Any] = [*records[:2], "garbage", records[3]]
    decoded: list[int] = []

    def decode(row: Any) -> AuditRecord:
        if not isinstance(row, AuditRecord):
            raise ValueError("not a record")
        decoded.append(row.seq)
        return row

    def seq_of(row: Any) -> int:
        return row.seq if isinstance(row, AuditRecord) else 3

    result = verify_rows(rows, decode, seq_of)
    assert (result.ok, result.records, result.first_bad_seq) == (False, 3, 3)
    assert result.problem == "record cannot be read (the record was edited): not a record"
    assert decoded == [1, 2]


def test_rows_that_decode_verify_as_their_chain() -> None:
    records = chain()
    result = verify_rows(records, lambda r: r, lambda r: r.seq)
    assert result.ok and result.records == 4


def test_times_are_written_in_utc_whatever_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        moment = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
        assert format_time(moment) == "2026-01-01T12:00:00.000000+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
