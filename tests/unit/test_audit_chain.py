"""The sealed hash is sha256 of ``canonical`` of the record's fields, for every record an
entry can make: the key-by-key text ``seal_fields`` writes (the evidence encoded once) must be
byte for byte the canonical JSON that verification recomputes."""

from __future__ import annotations

import enum
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.audit_chain import canonical, hash_fields, record_hash, seal_fields, verify_chain
from shared.model import AuditEntry, AuditKind

# All of JSON's string space and what Python strings add: lone surrogates, controls, quotes.
TEXT = st.text(st.characters(codec=None, categories=None), max_size=40)
NAME = st.one_of(st.none(), TEXT)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
EVIDENCE = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


class Colour(enum.StrEnum):
    RED = "red"


ENTRIES = st.builds(
    AuditEntry,
    kind=st.sampled_from(AuditKind),
    summary=TEXT,
    actor=TEXT,
    model=NAME,
    version=st.one_of(NAME, st.just(Colour.RED)),
    cycle=NAME,
    reason=TEXT,
    evidence=st.one_of(st.dictionaries(TEXT, EVIDENCE, max_size=5), EVIDENCE),
    caused_by=NAME,
)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])
)


def canonical_fields(entry: AuditEntry, seq: int, prev: str, time: datetime) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": time.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": entry.kind.value,
        "summary": entry.summary,
        "actor": entry.actor,
        "model": entry.model,
        "version": entry.version,
        "cycle": entry.cycle,
        "reason": entry.reason,
        "evidence": entry.evidence,
        "caused_by": entry.caused_by,
        "prev_hash": prev,
    }


@settings(max_examples=300, deadline=None)
@given(entry=ENTRIES, seq=st.integers(min_value=1, max_value=2**63), time=TIMES, prev=TEXT)
def test_the_seal_is_sha256_of_the_canonical_fields(
    entry: AuditEntry, seq: int, time: datetime, prev: str
) -> None:
    record, fields, evidence_text = seal_fields(entry, seq=seq, prev_hash=prev, time=time)
    expected = canonical(canonical_fields(entry, seq, prev, time))
    assert record.hash == hashlib.sha256(expected.encode("utf-8")).hexdigest()
    assert evidence_text == canonical(entry.evidence)
    assert record_hash(hash_fields(record)) == record.hash  # what verification recomputes
    assert record.time == time and record.time.utcoffset() == timedelta(0)
    assert fields["evidence"] is record.evidence


@settings(max_examples=50, deadline=None)
@given(entries=st.lists(ENTRIES, min_size=1, max_size=5), time=TIMES)
def test_a_chain_of_sealed_records_verifies(entries: list[AuditEntry], time: datetime) -> None:
    records = []
    prev = "0" * 64
    for seq, entry in enumerate(entries, start=1):
        record = seal_fields(entry, seq=seq, prev_hash=prev, time=time)[0]
        records.append(record)
        prev = record.hash
    result = verify_chain(records)
    assert result.ok, result.problem


SECRET = "s3cr3t-Value-42"


@settings(max_examples=150, deadline=None)
@given(evidence=st.dictionaries(TEXT, EVIDENCE, max_size=5), where=st.integers(0, 3))
def test_an_entry_carries_the_evidence_text_the_log_stores_and_no_secret_or_nan(
    evidence: dict[str, Any], where: int
) -> None:
    """``Services.entry`` looks at the evidence in its canonical JSON and hands that text to
    the log: what is stored and hashed is strict JSON, scrubbed, and equal to what encoding the
    scrubbed evidence gives."""
    import dataclasses
    import json

    from shared.redact import Redactor
    from tests.fakes import make_world

    if where == 1:
        evidence = {**evidence, "leak": f"token {SECRET} here"}
    elif where == 2:
        evidence = {**evidence, f"key-{SECRET}": [1, {"x": SECRET}]}
    redactor = Redactor([SECRET])
    svc = dataclasses.replace(make_world().services, redactor=redactor)
    reason = f"job said {SECRET}" if where == 3 else "because"
    entry = svc.entry(AuditKind.DECISION, "summary", evidence=evidence, model="m", reason=reason)
    assert SECRET not in entry.reason and entry.model == "m"
    record, _, stored = seal_fields(entry, seq=1, prev_hash="0" * 64, time=datetime.now(UTC))
    assert SECRET not in stored and SECRET not in json.loads(stored).__repr__()
    json.loads(stored, parse_constant=lambda name: pytest.fail(f"{name} stored"))
    assert stored == canonical(redactor.json(evidence))
    assert record_hash(hash_fields(record)) == record.hash
