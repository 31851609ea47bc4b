"""Anchors: one record that commits to the head of every audit chain, for every backend.

A chain shows edits, insertions and reorderings, but not records cut off its end. An anchor is
a record of a chain of its own (the *anchor chain*, hash-chained like the others) whose
evidence lists every chain's head at one moment, ``[[chain, seq, hash], ...]`` in chain order,
and their ordered hash (``root``: sha256 of that list's canonical JSON). Verification then
checks that each chain still holds the anchored record with the anchored hash: a record cut
off, or a rewrite that recomputes every later hash, in any chain after an anchor is caught.
Noting the anchor chain's head elsewhere (``audit verify --anchor``) protects the anchors too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from shared.audit_chain import canonical
from shared.model import AuditEntry, AuditKind, AuditRecord

ANCHOR_CHAIN = "anchor"


@dataclass(frozen=True, slots=True)
class Head:
    """The last record of one chain: its seq and hash (seq 0 and the genesis hash if empty)."""

    chain: int
    seq: int
    hash: str


def heads_root(heads: Sequence[Head]) -> str:
    """The ordered hash of ``heads`` (sorted by chain)."""
    listed = [[h.chain, h.seq, h.hash] for h in sorted(heads, key=lambda h: h.chain)]
    return hashlib.sha256(canonical(listed).encode("utf-8")).hexdigest()


def anchor_entry(heads: Sequence[Head], actor: str = "system") -> AuditEntry:
    """The anchor-chain entry committing to ``heads``."""
    ordered = sorted(heads, key=lambda h: h.chain)
    return AuditEntry(
        kind=AuditKind.ANCHOR,
        summary=f"anchor of {len(ordered)} chain(s), {sum(h.seq for h in ordered)} records",
        actor=actor,
        evidence={
            "chains": len(ordered),
            "heads": [[h.chain, h.seq, h.hash] for h in ordered],
            "root": heads_root(ordered),
        },
    )


def anchored_heads(anchor: AuditRecord) -> list[Head]:
    """The heads an anchor record commits to; ValueError when its evidence is malformed or
    its root does not match its heads."""
    evidence = anchor.evidence if isinstance(anchor.evidence, dict) else {}
    listed = evidence.get("heads")
    if not isinstance(listed, list):
        raise ValueError(f"anchor {anchor.seq} lists no heads")
    heads = []
    for item in listed:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError(f"anchor {anchor.seq} has a malformed head {item!r}")
        heads.append(Head(int(item[0]), int(item[1]), str(item[2])))
    if heads_root(heads) != evidence.get("root"):
        raise ValueError(f"anchor {anchor.seq}: its root does not match its heads")
    return heads


def chain_count(anchor: AuditRecord | None, shards: int) -> int:
    """How many chains to read: the configured ones, and any an anchor named (S was lowered)."""
    if anchor is None:
        return shards
    try:
        return max([shards, *(h.chain + 1 for h in anchored_heads(anchor))])
    except ValueError:
        return shards


def cut_problem(head: Head, records: int, found_hash: str | None) -> str | None:
    """Why a chain no longer holds the anchored ``head`` (None when it does)."""
    if head.seq == 0:
        return None
    if records < head.seq:
        return (
            f"chain {head.chain} ends at seq {records}, but an anchor committed seq {head.seq}: "
            "records were cut off after the anchor"
        )
    if found_hash != head.hash:
        return (
            f"chain {head.chain} seq {head.seq} no longer has the anchored hash: "
            "the chain was rewritten after the anchor"
        )
    return None


def merge_key(record: AuditRecord) -> tuple[object, int, int]:
    """The global order across chains: time, then chain, then seq."""
    return (record.time, record.chain, record.seq)
