"""The state store and audit log contracts on Azure Table Storage (Azurite) and on SQLite.

The backend-free tests of ``test_sqlite_store`` (those asking only for ``store_factory``) and
of ``test_sqlite_audit`` (those asking only for ``log``) are collected here a second time,
with this module's ``store_factory`` and ``log``: the very same test bodies, including the
multi-process races, run against Azurite (on SQLite they run in their own modules). The tests
written here run on both backends where they can: escaped keys, long texts; then what only
Table Storage needs: tampering through the SDK, audit appends racing from several processes,
lost answers to conditional writes, and repair of a crash between two writes.

Azurite is one server for the session (``tests/integration/azurite.py``); each test gets its
own tables through a fresh table prefix.
"""

from __future__ import annotations

import inspect
import itertools
import multiprocessing as mp
import subprocess
import sys
import time
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport

from shared import retry as retries
from shared.adapters import tables as tables_module
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.table_audit import AUDIT, CHAIN, TableAuditLog, as_entity, row_key
from shared.adapters.table_store import CYCLE, LOCK, ROW, STATE, TableStateStore, pk
from shared.audit_chain import seal
from shared.errors import PermanentError, SettingsError
from shared.model import AuditEntry, AuditKind, CycleState
from shared.ports import AuditLog, Claim, StateStore
from shared.rollout_state import RolloutState
from tests.integration import test_sqlite_audit as audit_suite
from tests.integration import test_sqlite_store as store_suite
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    AzuriteServer,
    azurite,
    azurite_server,
)

BACKENDS = ["sqlite", "azurite"]
T0 = audit_suite.T0
new_cycle = store_suite.new_cycle


def fresh_prefix() -> str:
    """Tables of their own for each test, in the one Azurite of the session."""
    return "t" + uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class TableStoreFactory(store_suite.StoreFactory):
    """Opens a new handle on one Azurite-backed store; picklable, for spawned processes."""

    prefix: str = "autopilot"

    def __call__(self) -> StateStore:
        return TableStateStore(self.location, table_prefix=self.prefix)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``store_factory`` and ``log`` on both backends; the reused SQLite tests on Azurite only
    (they run on SQLite in their own module already)."""
    reused = metafunc.function in REUSED.values()
    for fixture in ("store_factory", "log"):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, ["azurite"] if reused else BACKENDS, indirect=True)


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> store_suite.StoreFactory:
    if request.param == "sqlite":
        return store_suite.StoreFactory("sqlite", str(tmp_path / "state.db"))
    return TableStoreFactory("azurite", request.getfixturevalue("azurite"), fresh_prefix())


@pytest.fixture
def log(request: pytest.FixtureRequest, tmp_path: Path) -> AuditLog:
    clock = audit_suite.ticking_clock()
    if request.param == "sqlite":
        return SqliteAuditLog(tmp_path / "audit.db", clock=clock)
    connection = request.getfixturevalue("azurite")
    return TableAuditLog(connection, table_prefix=fresh_prefix(), clock=clock)


@pytest.fixture
def table_store(azurite: str) -> TableStateStore:  # noqa: F811 - the imported fixture
    return TableStateStore(azurite, table_prefix=fresh_prefix())


@pytest.fixture
def table_audit(azurite: str) -> TableAuditLog:  # noqa: F811 - the imported fixture
    return TableAuditLog(azurite, table_prefix=fresh_prefix(), clock=audit_suite.ticking_clock())


def _backend_free_tests(suite: types.ModuleType, fixture: str) -> dict[str, Any]:
    """The suite's own tests that ask for nothing but ``fixture``."""
    return {
        name: test
        for name, test in vars(suite).items()
        if name.startswith("test_")
        and inspect.isfunction(test)
        and test.__module__ == suite.__name__
        and set(inspect.signature(test).parameters) == {fixture}
    }


REUSED_STORE = _backend_free_tests(store_suite, "store_factory")
REUSED_AUDIT = _backend_free_tests(audit_suite, "log")
REUSED = {**REUSED_STORE, **REUSED_AUDIT}
globals().update(REUSED)  # collected by pytest as tests of this module, with our fixtures


def test_the_sqlite_suites_are_reused() -> None:
    assert not REUSED_STORE.keys() & REUSED_AUDIT.keys()
    assert all(globals()[name] is test for name, test in REUSED.items())  # none shadowed here
    assert "test_processes_claiming_the_same_keys_process_each_once" in REUSED_STORE
    assert "test_query_filters_in_seq_order" in REUSED_AUDIT
    print(f"{len(REUSED)} contract tests reused: {sorted(REUSED)}")


# -- more of the state store contract, on both backends -------------------------------------


def test_a_cycle_created_closed_takes_no_lock(store_factory: store_suite.StoreFactory) -> None:
    store = store_factory()
    closed = new_cycle("c1")
    closed.state = CycleState.FAILED
    assert store.create_cycle(closed) is None and closed.version == 1
    assert store.active_cycle("m") is None and store.last_closed_at("m") is None
    assert store.create_cycle(new_cycle("c2")) is None


AWKWARD = [
    "source/with/slashes|Microsoft.MachineLearningServices.RunCompleted|subject\\x#frag?q=1|id",
    "control\x01\x1f\x7f\x9fchars and 'quotes' and \"doubles\"",  # (NUL: SQLite substr stops)
    "unicode é 中文 😀 " + "long" * 600,  # over the 1 KiB key limit once encoded
    "",
]


@pytest.mark.parametrize("key", AWKWARD, ids=["reserved", "control", "long-unicode", "empty"])
def test_keys_with_characters_table_keys_forbid(
    store_factory: store_suite.StoreFactory, key: str
) -> None:
    store = store_factory()
    assert store.claim_delivery(key, T0, 60) is Claim.NEW
    assert store.claim_delivery(key, T0, 60) is Claim.IN_PROGRESS
    assert store.claim_delivery(key + "x", T0, 60) is Claim.NEW
    model, cycle_id = f"model/{key[:50]}", f"cycle#{key[:50]}?"
    cycle = new_cycle(cycle_id, model)
    cycle.job_name = f"job '{key[:20]}'"
    assert store.create_cycle(cycle) is None
    active = store.active_cycle(model)
    assert active is not None and active.id == cycle_id
    assert [c.id for c in store.list_cycles(model)] == [cycle_id]
    found = store.find_cycle_by_job(cycle.job_name)
    assert found is not None and found.id == cycle_id
    assert store.add_signal(model, key, T0) == 1
    assert store.add_signal(model, f"{key}/2", T0) == 2
    assert store.clear_signals(model, key) == 2


def test_a_cycle_body_over_64_kib_round_trips(store_factory: store_suite.StoreFactory) -> None:
    store = store_factory()
    cycle = new_cycle()
    cycle.decision = {"rules": [{"rule": f"r{i}", "why": "é😀" * 40} for i in range(1000)]}
    store.create_cycle(cycle)
    assert store.get_cycle("c1") == cycle
    cycle.transition(CycleState.RETRAINING, T0, "bigger still")
    cycle.rollout = RolloutState.from_json({"log": ["x" * 1000] * 100})  # kept though unknown
    store.save_cycle(cycle)
    assert store.get_cycle("c1") == cycle
    cycle.decision, cycle.rollout = None, None  # and back to small: no chunk left behind
    store.save_cycle(cycle)
    assert store.get_cycle("c1") == cycle


def test_long_audit_texts_round_trip(log: AuditLog) -> None:
    entry = AuditEntry(
        AuditKind.ERROR,
        "s" * 70_000 + "😀",  # over one 64 KiB string property
        actor="alice",
        model="m",
        reason="r😀" * 20_000,
        evidence={"big": ["é" * 1000] * 100},
    )
    appended = log.append(entry)
    assert log.get(1) == appended
    assert log.verify().ok


# -- Table Storage specifics ----------------------------------------------------------------


def test_audit_limit_reads_backwards_in_windows(table_audit: TableAuditLog) -> None:
    table_audit.query_window = 2
    for i in range(20):
        model = "rare" if i in (1, 4, 15) else "common"
        table_audit.append(AuditEntry(AuditKind.ACTION, f"{i}", model=model))
    assert [r.seq for r in table_audit.query(model="rare", limit=2)] == [5, 16]
    assert [r.seq for r in table_audit.query(model="rare", limit=5)] == [2, 5, 16]
    assert [r.seq for r in table_audit.query(limit=3)] == [18, 19, 20]


def test_reads_go_page_by_page(
    table_store: TableStateStore, table_audit: TableAuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "PAGE_SIZE", 2)
    records = fill(table_audit, 7)
    assert table_audit.query() == records and table_audit.verify().records == 7
    assert [r.seq for r in table_audit.query(model="other")] == [5, 6, 7]
    for i in range(5):
        table_store.create_cycle(new_cycle(f"c{i}", model=f"m{i}", at=T0 + timedelta(seconds=i)))
    assert [c.id for c in table_store.list_cycles()] == ["c4", "c3", "c2", "c1", "c0"]


class LosingTransport(RequestsTransport):  # type: ignore[misc]
    """Delivers every request, but reports the answer to the next ``method`` on an entity as
    lost (as a connection reset after the service acted would)."""

    lose: str = ""

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        if request.method == self.lose and "/Tables" not in request.url:
            self.lose = ""
            raise ServiceResponseError("connection reset after the service acted")
        return response


def test_a_write_whose_answer_was_lost_is_known_as_ours(azurite: str) -> None:  # noqa: F811
    no_wait = retries.RetryPolicy(attempts=3, initial_s=0.0, max_interval_s=0.0, total_s=10.0)
    policies = retries.RetryPolicies(read=no_wait, write=no_wait)
    transport = LosingTransport()
    prefix = fresh_prefix()
    store = TableStateStore(azurite, table_prefix=prefix, transport=transport, retry=policies)
    log = TableAuditLog(azurite, table_prefix=prefix, transport=transport, retry=policies)
    store.list_cycles(), store.active_cycle("m"), log.verify()  # tables exist
    transport.lose = "POST"  # the insert happened; its retry gets 409
    assert store.claim_delivery("k", T0, 60) is Claim.NEW and not transport.lose
    transport.lose = "POST"
    cycle = new_cycle()
    assert store.create_cycle(cycle) is None and cycle.version == 1 and not transport.lose
    transport.lose = "PUT"  # the replace happened; its retry gets 412
    cycle.job_name = "job-1"
    store.save_cycle(cycle)
    assert store.get_cycle("c1") == cycle and cycle.version == 2 and not transport.lose
    transport.lose = "POST"
    assert log.append(AuditEntry(AuditKind.ACTION, "once")).seq == 1 and not transport.lose
    assert [r.summary for r in log.query()] == ["once"] and log.verify().ok


def test_an_entity_over_1_mib_is_refused_before_sending(table_store: TableStateStore) -> None:
    cycle = new_cycle()
    cycle.decision = {"blob": "x" * 600_000}  # 1.2 MB in UTF-16
    with pytest.raises(PermanentError, match="at most 1048576 bytes"):
        table_store.create_cycle(cycle)
    assert table_store.active_cycle("m") is None
    assert table_store.create_cycle(new_cycle("c2")) is None  # the lock was given back


def test_settings_are_checked_and_secrets_kept_out_of_repr(
    azurite_server: AzuriteServer,  # noqa: F811 - the imported fixture
) -> None:
    with pytest.raises(SettingsError, match="connection string or an endpoint"):
        TableStateStore()
    with pytest.raises(SettingsError, match="prefix"):
        TableAuditLog(azurite_server.connection_string, table_prefix="bad-prefix")
    store = TableStateStore(azurite_server.connection_string)
    assert "AccountKey" not in repr(store) and "Eby8" not in repr(store)
    print(f"Azurite {azurite_server.version}: {' '.join(azurite_server.command)}")


def test_importing_and_constructing_touch_neither_the_sdk_nor_the_network() -> None:
    code = (
        "import sys\n"
        "from shared.adapters.table_store import TableStateStore\n"
        "from shared.adapters.table_audit import TableAuditLog\n"
        "TableStateStore(endpoint='https://nowhere.invalid')\n"
        "TableAuditLog(endpoint='https://nowhere.invalid')\n"
        "print('azure.data.tables' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


# -- tampering behind the log's back, through the SDK ---------------------------------------


fill = audit_suite.fill  # the same records the SQLite suite writes


Attack = Callable[[Any, TableAuditLog], None]


def _read(table: Any, seq: int) -> dict[str, Any]:
    return dict(table.get_entity(CHAIN, row_key(seq)))


def _put(table: Any, entity: dict[str, Any]) -> None:
    from azure.data.tables import UpdateMode

    table.upsert_entity(entity, mode=UpdateMode.REPLACE)


def _change(seq: int, change: Callable[[dict[str, Any]], None]) -> Attack:
    def attack(table: Any, log: TableAuditLog) -> None:
        entity = _read(table, seq)
        change(entity)
        _put(table, entity)

    return attack


def _set(seq: int, **values: Any) -> Attack:
    return _change(seq, lambda e: e.update(values))


def _move(table: Any, src: int, dst: int) -> None:
    _put(table, {**_read(table, src), "RowKey": row_key(dst), "seq": dst})


def _shift_up_from(table: Any, seq: int) -> None:
    for s in range(6, seq - 1, -1):
        _move(table, s, s + 1)
    table.delete_entity(CHAIN, row_key(seq))


def _forged(log: TableAuditLog, seq: int, *, rehash: bool) -> dict[str, Any]:
    """A made-up record for ``seq``, chained to the real one before it."""
    before = log.get(seq - 1)
    assert before is not None
    forged = seal(
        AuditEntry(AuditKind.DECISION, "approved by nobody", actor="mallory"),
        seq=seq,
        prev_hash=before.hash,
        time=before.time,
    )
    return as_entity(forged if rehash else replace(forged, hash="f" * 64))


def _insert_forged(rehash: bool, shift: bool) -> Attack:
    def attack(table: Any, log: TableAuditLog) -> None:
        forged = _forged(log, 3, rehash=rehash)
        if shift:
            _shift_up_from(table, 3)
        _put(table, forged)

    return attack


def _swap(table: Any, log: TableAuditLog) -> None:
    three, four = _read(table, 3), _read(table, 4)
    _put(table, {**four, "RowKey": row_key(3), "seq": 3})  # every property but seq changes
    _put(table, {**three, "RowKey": row_key(4), "seq": 4})


def _to_the_end(table: Any, log: TableAuditLog) -> None:
    _move(table, 3, 7)
    table.delete_entity(CHAIN, row_key(3))


# The SQLite suite's attacks, done to Table entities: attack -> (how, first bad seq)
TABLE_TAMPERING: dict[str, tuple[Attack, int]] = {
    "edit summary": (_set(3, summary="nothing happened"), 3),
    "edit evidence": (_set(3, evidence='{"i":99}'), 3),
    "evidence unreadable": (_set(3, evidence="{not json"), 3),
    "edit actor": (_set(3, actor="mallory"), 3),
    "null a field": (_change(3, lambda e: e.pop("model")), 3),
    "edit kind": (_set(3, kind="ignored"), 3),
    "kind unreadable": (_set(3, kind="whatever"), 3),
    "edit time": (_change(3, lambda e: e.update(time=e["time"].replace("12:00", "11:00"))), 3),
    "time naive": (_change(3, lambda e: e.update(time=e["time"][:26])), 3),
    "edit hash": (_change(3, lambda e: e.update(hash=e["prev_hash"])), 3),
    "edit prev_hash": (_change(3, lambda e: e.update(prev_hash=e["hash"])), 3),
    "delete first": (lambda t, log: t.delete_entity(CHAIN, row_key(1)), 2),
    "delete middle": (lambda t, log: t.delete_entity(CHAIN, row_key(3)), 4),
    "insert forged": (_insert_forged(rehash=False, shift=True), 3),
    "insert forged, rehashed": (_insert_forged(rehash=True, shift=True), 4),
    "replace with forged": (_insert_forged(rehash=True, shift=False), 4),
    "swap two records": (_swap, 3),
    "move a record to the end": (_to_the_end, 4),
}


@pytest.mark.parametrize("attack", list(TABLE_TAMPERING))
def test_verify_names_the_first_tampered_entity(
    azurite: str,  # noqa: F811 - the imported fixture
    table_audit: TableAuditLog,
    attack: str,
) -> None:
    from azure.data.tables import TableServiceClient

    fill(table_audit)
    assert table_audit.verify().ok
    how, first_bad = TABLE_TAMPERING[attack]
    service = TableServiceClient.from_connection_string(azurite)
    how(service.get_table_client(f"{table_audit.tables.prefix}{AUDIT}"), table_audit)
    result = table_audit.verify()
    print(f"{attack}: {result}")
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problem


# -- a crash between two writes is repaired by the next caller --------------------------------


def test_a_record_written_without_moving_the_head_stays_in_the_chain(
    table_audit: TableAuditLog,
) -> None:
    records = fill(table_audit, 3)
    orphan = seal(
        AuditEntry(AuditKind.ACTION, "written, then the writer died"),
        seq=4,
        prev_hash=records[-1].hash,
        time=records[-1].time + timedelta(seconds=1),
    )
    assert table_audit.tables.insert(AUDIT, as_entity(orphan))  # the head still says 3
    assert [r.seq for r in table_audit.query(limit=1)] == [4]
    assert table_audit.append(AuditEntry(AuditKind.ACTION, "next")).seq == 5
    result = table_audit.verify()
    assert result.ok and result.records == 5


def test_a_lost_head_is_rebuilt_from_the_records(table_audit: TableAuditLog) -> None:
    fill(table_audit, 4)
    table_audit.tables.delete(AUDIT, CHAIN, "head")
    assert table_audit.append(AuditEntry(AuditKind.ACTION, "after")).seq == 5
    assert table_audit.verify().ok


def test_a_lock_whose_cycle_never_appeared_expires(table_store: TableStateStore) -> None:
    lock = {"PartitionKey": pk(LOCK, "m"), "RowKey": ROW, "model": "m", "cycle_id": "ghost"}
    table_store.tables.insert(STATE, {**lock, "taken_at": time.time()})
    assert table_store.create_cycle(new_cycle("c1")) == "ghost"  # maybe still being created
    assert table_store.active_cycle("m") is None
    table_store.lock_grace_s = 0.0
    assert table_store.create_cycle(new_cycle("c1")) is None


def test_a_lock_left_by_a_closed_cycle_is_released(table_store: TableStateStore) -> None:
    cycle = new_cycle("c1")
    table_store.create_cycle(cycle)
    cycle.transition(CycleState.FAILED, T0 + timedelta(minutes=3), "died")
    # The cycle is saved closed, then the process dies before the lock goes.
    row = table_store.tables.get(STATE, pk(CYCLE, "c1"), ROW)
    assert row is not None
    entity = table_store._entity(cycle, cycle.version + 1, time.time())
    assert table_store.tables.replace(STATE, entity, row.etag)
    assert table_store.active_cycle("m") is None
    assert table_store.create_cycle(new_cycle("c2")) is None
    assert table_store.last_closed_at("m") == T0 + timedelta(minutes=3)


# -- audit appends racing from several processes on one Azurite -----------------------------


def _append(connection: str, prefix: str, start: Any, out: Any, index: int, n: int) -> None:
    try:
        log = TableAuditLog(connection, table_prefix=prefix)
        start.wait()
        seqs = [log.append(AuditEntry(AuditKind.ACTION, f"p{index}:{i}")).seq for i in range(n)]
        out.put((index, seqs))
    except BaseException:
        out.put((index, traceback.format_exc()))
        raise


def test_concurrent_appends_from_four_processes_keep_one_chain_on_azurite(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    procs_n, per_proc = 4, 25
    prefix = fresh_prefix()
    TableAuditLog(azurite, table_prefix=prefix).verify()  # the table exists before the race
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(procs_n, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_append, args=(azurite, prefix, start, out, i, per_proc))
        for i in range(procs_n)
    ]
    began = time.perf_counter()
    for p in procs:
        p.start()
    try:
        seqs = dict(out.get(timeout=90) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
    elapsed = time.perf_counter() - began
    assert all(isinstance(s, list) for s in seqs.values()), seqs
    log = TableAuditLog(azurite, table_prefix=prefix)
    result = log.verify()
    records = log.query()
    switches = sum(1 for a, b in itertools.pairwise(records) if a.summary[:3] != b.summary[:3])
    print(
        f"azurite, {procs_n} procs x {per_proc} appends: {result.records} records, "
        f"chain ok={result.ok}, {switches} switches between writers, {elapsed:.1f}s "
        "(including process start)"
    )
    assert result.ok and result.records == procs_n * per_proc
    assert sorted(s for mine in seqs.values() for s in mine) == list(range(1, 101))
    assert all(a.time <= b.time for a, b in itertools.pairwise(records))
    summaries = {r.seq: r.summary for r in records}
    for index, mine in seqs.items():
        assert [summaries[s] for s in mine] == [f"p{index}:{i}" for i in range(per_proc)]


def test_settings_select_the_table_backends(azurite: str) -> None:  # noqa: F811
    """AUTOPILOT_STORE=table with a connection string: the composition root builds both Table
    adapters, and they work against the account."""
    from composition.wiring import build_store
    from shared.settings import AppSettings

    settings = AppSettings.from_env(
        {"AUTOPILOT_STORE": "table", "AUTOPILOT_TABLE_CONNECTION_STRING": azurite}
    )
    store, audit = build_store(settings)
    assert isinstance(store, TableStateStore) and isinstance(audit, TableAuditLog)
    key = "wiring-" + uuid.uuid4().hex
    now = datetime.now(UTC)
    assert store.claim_delivery(key, now, 30.0) is Claim.NEW
    assert store.claim_delivery(key, now, 30.0) is Claim.IN_PROGRESS
    store.finish_delivery(key, now)
    assert store.claim_delivery(key, now, 30.0) is Claim.DUPLICATE
    record = audit.append(AuditEntry(AuditKind.EVENT_RECEIVED, "wiring check", model=key))
    assert audit.get(record.seq) == record and audit.verify().ok
