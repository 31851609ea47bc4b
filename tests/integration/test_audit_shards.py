"""The sharded audit log (issue 20): S chains on Table Storage (Azurite), anchors, batches.

Every test writes through the adapters' real write path and tampers behind their back
through the SDK, as someone with the storage key would.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport

from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.table_audit import TableAuditLog, home_chain
from shared.adapters.table_chain import AUDIT, HEAD, HINT_EVERY, as_entity, partition_of, row_key
from shared.audit_anchor import anchored_heads
from shared.audit_chain import GENESIS, seal
from shared.model import AuditEntry, AuditKind, AuditRecord
from tests.integration import test_sqlite_audit as audit_suite
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    AzuriteServer,
    azurite,
    azurite_server,
)
from tests.integration.test_cli import cli

SHARDS = 4


def fresh_prefix() -> str:
    return "s" + uuid.uuid4().hex[:12]


def entry(text: str, model: str = "m") -> AuditEntry:
    return AuditEntry(AuditKind.DECISION, text, model=model, evidence={"text": text})


def fill_every_chain(log: TableAuditLog, per_chain: int = 4) -> dict[int, list[AuditRecord]]:
    """``per_chain`` records in each chain, through each chain's own append."""
    written = {}
    for index in range(log.shards):
        chain = log.chain(index)
        with chain.lock:
            records = chain.try_append([entry(f"c{index}r{i}") for i in range(per_chain)])
        assert records is not None
        written[index] = records
    return written


def table(azurite: str, log: TableAuditLog) -> Any:  # noqa: F811 - the imported fixture
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(azurite)
    return service.get_table_client(f"{log.tables.prefix}{AUDIT}")


@pytest.fixture
def sharded(azurite: str) -> TableAuditLog:  # noqa: F811 - the imported fixture
    return TableAuditLog(
        azurite, table_prefix=fresh_prefix(), shards=SHARDS, clock=audit_suite.ticking_clock()
    )


# -- tampering in any shard ------------------------------------------------------------------


def _edit(t: Any, partition: str) -> None:
    from azure.data.tables import UpdateMode

    entity = dict(t.get_entity(partition, row_key(2)))
    t.upsert_entity({**entity, "summary": "nothing happened"}, mode=UpdateMode.REPLACE)


def _delete(t: Any, partition: str) -> None:
    t.delete_entity(partition, row_key(2))


@pytest.mark.parametrize("attack", [_edit, _delete], ids=["edit", "delete"])
@pytest.mark.parametrize("shard", [0, 3])
def test_tampering_in_any_shard_is_caught_naming_the_shard_and_seq(
    azurite: str,  # noqa: F811 - the imported fixture
    sharded: TableAuditLog,
    shard: int,
    attack: Any,
) -> None:
    fill_every_chain(sharded)
    intact = sharded.verify()
    assert intact.ok and intact.records == SHARDS * 4
    attack(table(azurite, sharded), partition_of(shard))
    result = sharded.verify()
    print(f"shard {shard}, {attack.__name__}: {result}")
    assert not result.ok
    assert result.chain == str(shard)
    assert result.first_bad_seq == (2 if attack is _edit else 3)
    assert f"chain {shard} seq {result.first_bad_seq}" in result.problem


def test_a_lowered_shard_count_still_verifies_every_chain_an_anchor_named(
    azurite: str,  # noqa: F811 - the imported fixture
    sharded: TableAuditLog,
) -> None:
    fill_every_chain(sharded)
    sharded.anchor()
    lowered = TableAuditLog(azurite, table_prefix=sharded.tables.prefix, shards=2)
    assert lowered.verify().records == SHARDS * 4  # chains 2 and 3 are still read
    _delete(table(azurite, sharded), partition_of(3))
    result = lowered.verify()
    assert not result.ok and result.chain == "3"


# -- cut off after an anchor -----------------------------------------------------------------


def _cut_last(t: Any, partition: str, records: list[AuditRecord]) -> None:
    """Remove the last record and set the head back to the one before: the chain alone and
    its head then look intact."""
    from azure.data.tables import UpdateMode

    t.delete_entity(partition, row_key(records[-1].seq))
    before = records[-2]
    head = {"PartitionKey": partition, "RowKey": HEAD, "seq": before.seq, "hash": before.hash}
    t.upsert_entity(head, mode=UpdateMode.REPLACE)


def test_cutting_records_off_a_shard_after_an_anchor_is_caught(
    azurite: str,  # noqa: F811 - the imported fixture
    sharded: TableAuditLog,
) -> None:
    written = fill_every_chain(sharded)
    anchor = sharded.anchor()
    heads = {h.chain: h for h in anchored_heads(anchor)}
    assert {c: (h.seq, h.hash) for c, h in heads.items()} == {
        c: (records[-1].seq, records[-1].hash) for c, records in written.items()
    }
    assert sharded.anchor() == anchor  # nothing moved: no new anchor
    t = table(azurite, sharded)
    _cut_last(t, partition_of(2), written[2])
    result = sharded.verify()
    print(result)
    assert not result.ok and result.chain == "2" and result.first_bad_seq == 4
    assert "cut off after the anchor" in result.problem

    # A rewrite that recomputes the hashes after the anchor is caught too.
    forged = seal(
        entry("approved by nobody"), seq=4, prev_hash=written[2][-2].hash, time=written[2][-1].time
    )
    t.create_entity(as_entity(forged, partition_of(2)))
    rewritten = sharded.verify()
    assert not rewritten.ok and rewritten.chain == "2" and "rewritten" in rewritten.problem


def test_on_sqlite_an_anchor_catches_a_cut_and_the_cli_checks_the_anchor_chain(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    log = SqliteAuditLog(data / "audit.db")
    log.append_many([entry(f"r{i}") for i in range(5)])
    made = cli("audit", "anchor", data=data)
    assert made.returncode == 0, made.stderr
    noted = made.stdout.split()[1]  # aSEQ:HASH
    assert noted.startswith("a1:") and "chain 0 at 5" in made.stdout
    log.append(entry("later"))
    assert cli("audit", "verify", "--anchor", noted, data=data).returncode == 0
    with sqlite3.connect(data / "audit.db") as db:
        db.execute("DELETE FROM audit WHERE seq >= 5")
    db.close()
    cut = cli("audit", "verify", data=data)
    assert cut.returncode == 1 and "chain 0 ends at seq 4" in cut.stdout
    with sqlite3.connect(data / "audit.db") as db:  # the anchor removed as well
        db.execute("DELETE FROM audit_anchor")
    db.close()
    assert cli("audit", "verify", data=data).returncode == 0  # nothing left to compare with
    gone = cli("audit", "verify", "--anchor", noted, data=data)
    assert gone.returncode == 1 and "the anchor chain was cut back" in gone.stdout


# -- concurrent writers ----------------------------------------------------------------------


def _writer(connection: str, prefix: str, start: Any, out: Any, index: int, n: int) -> None:
    try:
        log = TableAuditLog(connection, table_prefix=prefix, shards=SHARDS)
        start.wait()
        mine = []
        for i in range(n):
            record = log.append(entry(f"p{index}:{i}", model=f"m{index}"))
            mine.append((record.chain, record.seq))
            if index == 0 and i % 5 == 4:
                log.anchor()
        out.put((index, mine, log.stats.lost_races))
    except BaseException:
        out.put((index, traceback.format_exc(), 0))
        raise


def test_concurrent_writers_leave_every_shard_a_valid_chain_and_the_anchors_consistent(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    procs_n, per_proc = 4, 25
    prefix = fresh_prefix()
    TableAuditLog(azurite, table_prefix=prefix).verify()  # the table exists before the race
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(procs_n, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(azurite, prefix, start, out, i, per_proc))
        for i in range(procs_n)
    ]
    for p in procs:
        p.start()
    try:
        answers = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert all(isinstance(mine, list) for _, mine, _ in answers), answers
    log = TableAuditLog(azurite, table_prefix=prefix, shards=SHARDS)
    final = log.anchor()
    result = log.verify()
    lost = sum(n for _, _, n in answers)
    print(f"{procs_n} procs x {per_proc} appends over {SHARDS} chains: {result}, lost races {lost}")
    assert result.ok and result.records == procs_n * per_proc
    written = {place for _, mine, _ in answers for place in mine}
    assert len(written) == procs_n * per_proc  # no (chain, seq) given twice
    by_place = {(r.chain, r.seq): r for r in log.query()}
    assert set(by_place) == written
    for index, mine, _ in answers:  # each writer's records are its own, in its order
        assert [by_place[p].summary for p in mine] == [f"p{index}:{i}" for i in range(per_proc)]
    heads = anchored_heads(final)
    for head in heads:  # the last anchor is every chain's real head
        last = max((s for c, s in written if c == head.chain), default=0)
        assert head.seq == last
    anchors = [log.get_anchor(s) for s in range(1, final.seq + 1)]
    assert all(a is not None for a in anchors) and len(anchors) >= 2


def test_threads_of_one_process_never_race_each_other(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    """Threads sharing one log take different chains while they are free: no lost race, no
    wasted round trip, and the records spread over the chains."""
    log = TableAuditLog(azurite, table_prefix=fresh_prefix(), shards=SHARDS)
    log.verify()
    with ThreadPoolExecutor(SHARDS) as pool:
        written = list(pool.map(lambda i: log.append(entry(f"t{i}")), range(80)))
    assert log.stats.lost_races == 0 and log.stats.appends == 80
    assert len({r.chain for r in written}) > 1
    result = log.verify()
    assert result.ok and result.records == 80


# -- the upgrade from the single chain --------------------------------------------------------


def test_an_upgrade_from_the_single_chain_keeps_verifying(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    prefix = fresh_prefix()
    old = TableAuditLog(azurite, table_prefix=prefix)
    # What the version before sharding left: records in partition "chain", the head in
    # partition "head" (and no head inside the chain's partition).
    records, prev = [], GENESIS
    for i in range(5):
        record = seal(
            entry(f"old {i}"), seq=i + 1, prev_hash=prev, time=audit_suite.T0.replace(second=i)
        )
        assert old.tables.insert(AUDIT, as_entity(record))
        records.append(record)
        prev = record.hash
    old.tables.upsert(AUDIT, {"PartitionKey": "head", "RowKey": "head", "seq": 5, "hash": prev})

    upgraded = TableAuditLog(azurite, table_prefix=prefix, shards=SHARDS)
    before = upgraded.verify()
    assert before.ok and before.records == 5
    assert upgraded.query() == records  # chain 0, hashes unchanged
    assert upgraded.get(3) == records[2]
    first = upgraded.chain(0)
    with first.lock:
        appended = first.try_append([entry("new, in the first chain")])
    assert appended is not None and appended[0].seq == 6 and appended[0].prev_hash == prev
    for i in range(8):
        upgraded.append(entry(f"new {i}"))
    anchor = upgraded.anchor()
    after = upgraded.verify()
    assert after.ok and after.records == 14
    assert {h.chain: h.seq for h in anchored_heads(anchor)}[0] >= 6
    assert [r.seq for r in upgraded.query() if r.chain == 0][:6] == [1, 2, 3, 4, 5, 6]


# -- batches ----------------------------------------------------------------------------------


class CountingTransport(RequestsTransport):  # type: ignore[misc]
    """Counts the requests sent on entities (not the table creation) and keeps what each
    was: ``batch`` (an entity-group transaction), ``insert``, ``read`` or ``query``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent = 0
        self.kinds: list[str] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        if "/Tables" not in request.url:
            self.sent += 1
            self.kinds.append(_kind(request.method, request.url))
        return super().send(request, **kwargs)

    def reset(self) -> None:
        self.sent = 0
        self.kinds = []


def _kind(method: str, url: str) -> str:
    if "$batch" in url:
        return "batch"
    if method == "POST":
        return "insert"
    return "read" if "(PartitionKey=" in url else "query"


def test_a_batch_is_one_transaction_in_one_round_trip(azurite: str) -> None:  # noqa: F811
    transport = CountingTransport()
    log = TableAuditLog(azurite, table_prefix=fresh_prefix(), transport=transport)
    log.verify()
    transport.reset()
    first = log.append_many([entry(f"a{i}") for i in range(40)])
    # A new log reads its head, the head of the versions before sharding, the tail past
    # them, then writes the 40 records in one transaction.
    assert transport.sent == 4
    transport.reset()
    second = log.append_many([entry(f"b{i}") for i in range(99)])
    assert transport.sent == 1  # the head is known: one round trip for 99 records
    assert [r.seq for r in first + second] == list(range(1, 140))
    transport.reset()
    third = log.append_many([entry(f"c{i}") for i in range(150)])
    assert transport.sent == 2 and len(third) == 150  # 99 + 51: two transactions
    assert log.verify().ok and log.stats.transactions == 4


def test_a_batch_that_loses_the_race_writes_nothing_then_lands_whole(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    prefix = fresh_prefix()
    one = TableAuditLog(azurite, table_prefix=prefix)
    other = TableAuditLog(azurite, table_prefix=prefix)
    one.append(entry("one"))  # ``one`` now caches the head at seq 1
    other.append(entry("other"))  # and the head moves to 2 behind its back
    batch = one.append_many([entry(f"batch {i}") for i in range(10)])
    assert one.stats.lost_races == 1
    assert [r.seq for r in batch] == list(range(3, 13))
    stored = one.query()
    assert [r.summary for r in stored] == ["one", "other"] + [f"batch {i}" for i in range(10)]
    assert one.verify().ok


def test_sqlite_writes_a_batch_in_one_transaction(tmp_path: Path) -> None:
    calls = iter(range(100))

    def clock() -> Any:
        n = next(calls)
        if n == 13:
            raise RuntimeError("the clock failed mid-batch")
        return audit_suite.T0.replace(microsecond=n)

    log = SqliteAuditLog(tmp_path / "audit.db", clock=clock)
    assert [r.seq for r in log.append_many([entry(f"a{i}") for i in range(10)])] == list(
        range(1, 11)
    )
    with pytest.raises(RuntimeError):
        log.append_many([entry(f"b{i}") for i in range(10)])  # fails at its 4th record
    assert [r.seq for r in log.query()] == list(range(1, 11))  # none of the batch was kept
    assert log.verify().ok


def test_the_audit_scale_benchmark_runs_on_tiny_inputs() -> None:
    """``python -m benchmarks audit-scale`` keeps working (its own Azurite, forked writers,
    writer threads in one process, the SDK probe, the idle-machine estimate)."""
    from benchmarks import audit_scale

    result = audit_scale.run(
        writers=(1, 2),
        layouts={"single_chain": 1, "sharded_8": 8},
        window_s=0.3,
        verify_records=64,
        threaded=((8, 2, 2),),
        warmup_s=0.1,
    )
    assert set(result["single_chain"]) == {"1", "2"} and result["single_chain"]["1"] > 0
    assert set(result["sharded"]) == {"8"} and result["sharded"]["8"]["2"] > 0
    assert result["threaded"]["8 chains, 1x2"] > 0
    assert all(
        p["chains_valid"] and p["records_verified"] >= p["appends"] for p in result["points"]
    )
    one = result["points"][0]  # one writer on one chain: one request per append, no race
    assert one["lost_races_per_append"] == 0 and 1 <= one["requests_per_append"] < 1.1
    assert set(result["sdk_cpu_ms_per_call"]) == {
        "create_entity",
        "tables_insert",
        "submit_transaction_2_ops",
        "get_entity",
        "query_tail",
    }
    assert result["idle_machine"]["appends_per_s_cpu_cap"] > 0
    assert result["verify"]["ok"] and result["verify"]["verified"] == 64
    assert "| chains | writers | appends/s |" in audit_scale.table(result)


# -- one round trip per append; lost races; spreading ----------------------------------------


def test_a_single_append_is_one_insert_and_the_head_hint_lags_but_never_leads(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    transport = CountingTransport()
    prefix = fresh_prefix()
    log = TableAuditLog(azurite, table_prefix=prefix, transport=transport)
    log.append(entry("first"))  # reads the (absent) hints and the tail once
    transport.reset()
    for i in range(2, 41):
        log.append(entry(f"r{i}"))
    # One request per append: a plain insert, except seq 32, which moves the hint in the
    # insert's transaction.
    assert transport.sent == 39
    assert transport.kinds.count("batch") == 1 and transport.kinds.count("insert") == 38
    t = table(azurite, log)
    hint = t.get_entity(partition_of(0), HEAD)
    assert hint["seq"] == HINT_EVERY  # behind the last record (40), never past it
    # Another writer starts from the hint and finds the records past it.
    other = TableAuditLog(azurite, table_prefix=prefix)
    record = other.append(entry("other"))
    assert record.seq == 41 and record.prev_hash == log.query()[39].hash
    result = other.verify()
    assert result.ok and result.records == 41


def test_a_lost_race_costs_the_failed_insert_and_a_tail_read_whatever_the_writers(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    prefix = fresh_prefix()
    transport = CountingTransport()
    loser = TableAuditLog(azurite, table_prefix=prefix, shards=SHARDS, transport=transport)
    first = loser.append(entry("mine"))
    behind = TableAuditLog(azurite, table_prefix=prefix, shards=SHARDS)
    others = behind.chain(first.chain)
    with others.lock:  # another writer appends to the same chain behind the loser's back
        assert others.try_append([entry("theirs")]) is not None
    transport.reset()
    moved = loser.append(entry("mine again"))
    assert loser.stats.lost_races == 1 and moved.chain != first.chain
    # The failed insert; then, on a chain it knew nothing of, the hint (on chain 0 also the
    # head of the versions before sharding) and the tail; the insert.
    hints = ["read", "read"] if moved.chain == 0 else ["read"]
    assert transport.kinds == ["insert", *hints, "query", "insert"]

    # With one chain there is nowhere to go: the tail past what it knew, and the insert.
    single = TableAuditLog(azurite, table_prefix=fresh_prefix(), transport=transport)
    single.append(entry("a"))
    TableAuditLog(azurite, table_prefix=single.tables.prefix).append(entry("b"))
    transport.reset()
    assert single.append(entry("c")).seq == 3
    assert single.stats.lost_races == 1
    assert transport.kinds == ["insert", "query", "insert"]
    assert single.verify().ok and loser.verify().records == 3


def test_a_writer_skips_a_chain_another_writer_is_on_without_losing_a_race(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    prefix, clock = fresh_prefix(), audit_suite.ticking_clock()
    there = TableAuditLog(azurite, table_prefix=prefix, shards=SHARDS, clock=clock)
    taken = there.append(entry("there first")).chain
    same_home = next(f"w{i}" for i in range(1000) if home_chain(f"w{i}", SHARDS) == taken)
    late = TableAuditLog(
        azurite, table_prefix=prefix, shards=SHARDS, clock=clock, writer_id=same_home
    )
    assert late.home == taken
    record = late.append(entry("late"))
    assert record.chain != taken
    assert late.stats.lost_races == 0 and late.stats.busy_chains_skipped == 1
    assert there.append(entry("there again")).chain == taken and there.stats.lost_races == 0


def test_writers_settle_one_per_chain(azurite: str) -> None:  # noqa: F811
    """Writers (separate logs, as separate instances would hold) taking turns on as many
    chains as writers: within a few rounds each has a chain of its own and no race is lost."""
    n, rounds = 8, 10
    prefix, clock = fresh_prefix(), audit_suite.ticking_clock()
    logs = [
        TableAuditLog(azurite, table_prefix=prefix, shards=n, clock=clock, writer_id=f"i{k}")
        for k in range(n)
    ]
    history = []
    for r in range(rounds):
        lost = sum(log.stats.lost_races for log in logs)
        chains = {log.append(entry(f"{k}:{r}", model=f"m{k}")).chain for k, log in enumerate(logs)}
        history.append((sum(log.stats.lost_races for log in logs) - lost, len(chains)))
    print(f"(lost races, chains used) per round: {history}")
    assert history[-5:] == [(0, n)] * 5
    result = logs[0].verify()
    assert result.ok and result.records == n * rounds


def test_records_past_the_head_hint_cut_off_after_an_anchor_are_caught(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    """Single appends leave the hint behind (it moves every 32nd seq); the anchor is what
    commits the records past it."""
    log = TableAuditLog(azurite, table_prefix=fresh_prefix(), clock=audit_suite.ticking_clock())
    for i in range(HINT_EVERY + 3):
        log.append(entry(f"r{i}"))
    t = table(azurite, log)
    assert t.get_entity(partition_of(0), HEAD)["seq"] == HINT_EVERY
    log.anchor()
    t.delete_entity(partition_of(0), row_key(HINT_EVERY + 3))
    result = log.verify()
    assert not result.ok and result.chain == "0" and result.first_bad_seq == HINT_EVERY + 3
    assert "cut off after the anchor" in result.problem


def test_a_proxy_set_in_the_environment_is_still_used(
    azurite: str,  # noqa: F811 - the imported fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without proxy variables the client skips requests' per-request scan of the
    environment; with one set, requests still go through the proxy (here: nobody listens)."""
    from shared import retry as retries
    from shared.errors import TransientError
    from tests.integration.azurite import _free_port

    once = retries.RetryPolicy(attempts=1, initial_s=0.0, max_interval_s=0.0, total_s=5.0)
    policies = retries.RetryPolicies(read=once, write=once)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    direct = TableAuditLog(azurite, table_prefix=fresh_prefix(), retry=policies)
    assert direct.append(entry("direct")).seq == 1
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_free_port()}")
    proxied = TableAuditLog(azurite, table_prefix=fresh_prefix(), retry=policies)
    with pytest.raises(TransientError):
        proxied.append(entry("through a proxy nobody runs"))
