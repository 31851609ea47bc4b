"""Audit appends on Table Storage as writers are added: one chain vs S chains (issue 20).

``python -m benchmarks audit-scale`` starts Azurite (``tests/integration/azurite.py``: loopback,
free port, in memory, telemetry off) and, for one chain and for S = 8 and 32, runs 1, 2, 4, 8,
16 and 32 writers at once, each a separate process (a Function instance) with its own
``TableAuditLog``, appending one record at a time for a fixed window. Every request waits an
injected 5 ms first (a ``RequestsTransport`` that sleeps before sending), so waiting
dominates, as with a real storage account, and 2 cores are enough. It prints appends/s (all
writers together), p99 append latency and lost races per append, then times ``verify`` over
100,000 records in 32 chains (same 5 ms per request), and writes ``results.audit_scale`` into
``benchmarks/results.json`` (other keys kept) and a table for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from benchmarks.common import ROOT, machine_notes, markdown_table, percentile
from shared.adapters.table_audit import TableAuditLog
from shared.adapters.table_chain import as_entity, row_key
from shared.adapters.tables import Tables
from shared.audit_chain import GENESIS, seal
from shared.errors import TransientError
from shared.model import AuditEntry, AuditKind

LATENCY_S = 0.005
WRITERS = (1, 2, 4, 8, 16, 32)
LAYOUTS = {"single_chain": 1, "sharded_8": 8, "sharded_32": 32}
WINDOW_S = 4.0
WARMUP_S = 1.0
SDK_PROBE_OPS = 200
# (chains, writers, threads per process): writers as threads, as one Functions worker
# process runs concurrent invocations of a synchronous function.
THREADED = ((32, 32, 8), (32, 32, 32))
CORES = 2
VERIFY_RECORDS = 100_000
VERIFY_SHARDS = 32
RESULTS = ROOT / "benchmarks" / "results.json"


class DelayedTransport(RequestsTransport):  # type: ignore[misc]  # azure-core ships RequestsTransport untyped (subclass of Any)
    """Every request waits ``delay_s`` before it is sent: a storage account's round trip.
    Counts the requests sent."""

    def __init__(self, delay_s: float = LATENCY_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s
        self.sent = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.sent += 1  # several threads: an estimate, good enough for a per-append figure
        time.sleep(self.delay_s)
        return super().send(request, **kwargs)


def _entry(writer: int, i: int) -> AuditEntry:
    return AuditEntry(
        AuditKind.DECISION,
        f"writer {writer} decision {i}",
        model=f"model-{writer}",
        reason="benchmark",
        evidence={"writer": writer, "i": i, "score": 0.5},
    )


@dataclass
class _Tally:
    """What one writer thread did in the measured window."""

    latencies: list[float] = field(default_factory=list)


def _writer(
    connection: str,
    prefix: str,
    shards: int,
    index: int,
    threads: int,
    start: Any,
    timing: tuple[float, float],
    out: Any,
) -> None:
    """One writer process (a Function instance's worker) with ``threads`` writer threads
    (concurrent invocations) sharing one ``TableAuditLog``: one append each, wait for the
    other processes, append for ``warmup_s`` (not measured), then for ``window_s``. Reports
    latencies, lost races and requests of the window, the warm-up's lost races, and CPU."""
    warmup_s, window_s = timing
    try:
        transport = DelayedTransport()
        log = TableAuditLog(connection, table_prefix=prefix, shards=shards, transport=transport)
        tallies = [_Tally() for _ in range(threads)]

        def run(thread: int, until: float, measured: bool) -> None:
            writer, i = index * threads + thread, 0
            while time.perf_counter() < until:
                began = time.perf_counter()
                log.append(_entry(writer, i))
                if measured:
                    tallies[thread].latencies.append(time.perf_counter() - began)
                i += 1

        def phase(seconds: float, measured: bool) -> None:
            until = time.perf_counter() + seconds
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda t: run(t, until, measured), range(threads)))

        log.append(_entry(index * threads, -1))
        start.wait()
        phase(warmup_s, measured=False)
        warm_lost = log.stats.lost_races
        cpu, lost, skipped, sent = (
            time.process_time(),
            log.stats.lost_races,
            log.stats.busy_chains_skipped,
            transport.sent,
        )
        phase(window_s, measured=True)
        out.put(
            (
                index,
                [x for t in tallies for x in t.latencies],
                log.stats.lost_races - lost,
                time.process_time() - cpu,
                "",
                warm_lost,
                log.stats.busy_chains_skipped - skipped,
                transport.sent - sent,
            )
        )
    except BaseException as exc:  # report, do not hang the parent
        out.put((index, [], 0, 0.0, f"{type(exc).__name__}: {exc}", 0, 0, 0))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_point(
    connection: str,
    shards: int,
    writers: int,
    window_s: float,
    server_pid: int = 0,
    threads: int = 1,
    warmup_s: float = WARMUP_S,
) -> dict[str, Any]:
    """``writers`` writers (``writers / threads`` processes of ``threads`` threads) appending
    to a fresh log of ``shards`` chains: ``warmup_s`` together, then ``window_s`` measured."""
    prefix = "b" + uuid.uuid4().hex[:12]
    TableAuditLog(connection, table_prefix=prefix, shards=shards).verify()  # the table
    ctx = mp.get_context("fork")
    n = max(1, writers // threads)
    start, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer,
            args=(connection, prefix, shards, i, threads, start, (warmup_s, window_s), out),
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    start.wait(timeout=120)
    time.sleep(warmup_s)
    server_cpu, load = _cpu_s(server_pid), os.getloadavg()[0]
    answers = [out.get(timeout=warmup_s + window_s + 120) for _ in procs]
    server_cpu = _cpu_s(server_pid) - server_cpu
    for p in procs:
        p.join(30)
    log = TableAuditLog(connection, table_prefix=prefix, shards=shards)
    point = {"shards": shards, "writers": writers, "processes": n, "threads_per_process": threads}
    return {**point, **_figures(answers, window_s, server_cpu, load), **_checked(log)}


def _checked(log: TableAuditLog) -> dict[str, Any]:
    checked = log.verify()
    return {"chains_valid": checked.ok, "records_verified": checked.records}


def _figures(answers: list[Any], window_s: float, server_cpu: float, load: float) -> dict[str, Any]:
    """A point's figures from its writers' answers (latencies, lost races, CPU, ...)."""
    errors = [a[4] for a in answers if a[4]]
    latencies = [x for a in answers for x in a[1]]
    appends = len(latencies)

    def per_append(total: float, scale: float = 1.0) -> float:
        return total / appends * scale if appends else float("nan")

    return {
        "appends": appends,
        "appends_per_s": appends / window_s,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "lost_races_per_append": per_append(sum(a[2] for a in answers)),
        "warmup_lost_races": sum(a[5] for a in answers),
        "busy_chains_skipped_per_append": per_append(sum(a[6] for a in answers)),
        "requests_per_append": per_append(sum(a[7] for a in answers)),
        "client_cpu_ms_per_append": per_append(sum(a[3] for a in answers), 1000),
        "azurite_cpu_ms_per_append": per_append(server_cpu, 1000),
        "load_avg_1min_at_start": load,
        "errors": errors[:3],
    }


def sdk_cpu(connection: str, n: int = SDK_PROBE_OPS) -> dict[str, float]:
    """Writer CPU (ms) per call of the SDK paths an append can take, no injected latency:
    ``create_entity`` (a single append), the same through ``Tables.insert`` (our transport:
    no per-request scan of the environment when no proxy is set), a two-operation
    ``submit_transaction`` (record and hint), ``get_entity`` and a small ``query_entities``
    (a tail read)."""
    from azure.data.tables import TableServiceClient, UpdateMode

    service = TableServiceClient.from_connection_string(connection, retry_total=0)
    table = service.create_table_if_not_exists("p" + uuid.uuid4().hex[:12])
    now = datetime.now(UTC)

    def record(seq: int, partition: str) -> dict[str, Any]:
        return as_entity(seal(_entry(0, seq), seq=seq, prev_hash=GENESIS, time=now), partition)

    def hint(seq: int) -> tuple[Any, ...]:
        head = {"PartitionKey": "t", "RowKey": "head", "seq": seq, "hash": GENESIS}
        return ("upsert", head, {"mode": UpdateMode.REPLACE})

    ours = Tables(
        connection, endpoint=None, credential=None, table_prefix="q" + uuid.uuid4().hex[:8]
    )
    calls: dict[str, Callable[[int], Any]] = {
        "create_entity": lambda i: table.create_entity(record(i, "c")),
        "tables_insert": lambda i: ours.insert("p", record(i, "c")),
        "submit_transaction_2_ops": lambda i: table.submit_transaction(
            [("create", record(i, "t")), hint(i)]
        ),
        "get_entity": lambda i: table.get_entity("c", row_key(i)),
        "query_tail": lambda i: list(
            table.query_entities(
                f"PartitionKey eq 'c' and RowKey gt '{row_key(i)}' "
                f"and RowKey lt '{row_key(i + 9)}'",
                select=["RowKey", "hash", "time"],
            )
        ),
    }
    measured = {}
    for name, call in calls.items():
        began = time.process_time()
        for i in range(1, n + 1):
            call(i)
        measured[name] = (time.process_time() - began) / n * 1000
    return measured


def time_verify(connection: str, records: int, shards: int) -> dict[str, Any]:
    """Fill ``shards`` chains with ``records`` records in 99-record transactions (no injected
    latency), then time one ``verify`` of them with 5 ms per request."""
    prefix = "v" + uuid.uuid4().hex[:12]
    log = TableAuditLog(connection, table_prefix=prefix, shards=shards)
    log.verify()
    per_chain = records // shards

    def fill(index: int) -> int:
        chain = log.chain(index)
        while (done := chain.current_head().seq) < per_chain:
            batch = [_entry(index, done + i) for i in range(min(99, per_chain - done))]
            try:
                with chain.lock:
                    chain.try_append(batch)  # None: not written; the loop reads the head again
            except TransientError:  # an answer lost under load: the head says what landed
                chain.forget_head()
        return chain.current_head().seq

    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        filled = sum(pool.map(fill, range(shards)))
    fill_s = time.perf_counter() - began
    log.anchor()
    timed = TableAuditLog(
        connection, table_prefix=prefix, shards=shards, transport=DelayedTransport()
    )
    began = time.perf_counter()
    result = timed.verify()
    verify_s = time.perf_counter() - began
    return {
        "records": filled,
        "shards": shards,
        "fill_s": fill_s,
        "verify_s": verify_s,
        "ok": result.ok,
        "verified": result.records,
    }


def run(
    writers: Sequence[int] = WRITERS,
    layouts: dict[str, int] | None = None,
    window_s: float = WINDOW_S,
    verify_records: int = VERIFY_RECORDS,
    threaded: Sequence[tuple[int, int, int]] = THREADED,
    warmup_s: float = WARMUP_S,
) -> dict[str, Any]:
    """Every layout x writer count as processes, then each ``threaded`` (chains, writers,
    threads per process) point, the SDK's CPU per call, and the timed ``verify``."""
    from tests.integration.azurite import start_azurite

    layouts = LAYOUTS if layouts is None else layouts
    server = start_azurite()
    began = time.perf_counter()
    pid = server.process.pid
    try:
        points = {
            name: [
                run_point(server.connection_string, shards, w, window_s, pid, 1, warmup_s)
                for w in writers
            ]
            for name, shards in layouts.items()
        }
        threads = [
            run_point(server.connection_string, shards, w, window_s, pid, t, warmup_s)
            for shards, w, t in threaded
        ]
        sdk = sdk_cpu(server.connection_string)
        verified = _verify_or_why(server.connection_string, verify_records)
    finally:
        server.stop()
    sharded = {name: pts for name, pts in points.items() if name != "single_chain"}
    every = [p for pts in points.values() for p in pts]
    return {
        "latency_injected_ms": LATENCY_S * 1000,
        "window_s": window_s,
        "warmup_s": warmup_s,
        "azurite": server.version,
        "single_chain": {
            str(p["writers"]): p["appends_per_s"] for p in points.get("single_chain", [])
        },
        "sharded": {
            str(LAYOUTS.get(name, name)): {str(p["writers"]): p["appends_per_s"] for p in pts}
            for name, pts in sharded.items()
        },
        "threaded": {
            f"{p['shards']} chains, {p['processes']}x{p['threads_per_process']}": p["appends_per_s"]
            for p in threads
        },
        "points": every + threads,
        "sdk_cpu_ms_per_call": sdk,
        "idle_machine": idle_estimate(every + threads),
        "verify": verified,
        "duration_s": time.perf_counter() - began,
    }


def _verify_or_why(connection: str, records: int) -> dict[str, Any]:
    """The timed verify; if it fails, the appends' figures are kept and the error said."""
    try:
        return time_verify(connection, records, VERIFY_SHARDS)
    except Exception as exc:
        return {
            "records": 0,
            "shards": VERIFY_SHARDS,
            "fill_s": float("nan"),
            "verify_s": float("nan"),
            "ok": False,
            "verified": 0,
            "error": repr(exc),
        }


def idle_estimate(points: Sequence[dict[str, Any]], cores: int = CORES) -> dict[str, Any]:
    """What the CPU figures imply with the machine to ourselves: ``cores`` cores shared by the
    writers and Azurite (one Node process: one core at most), for the point with the most
    writers and chains (the issue's target point)."""
    target = max(points, key=lambda p: (p["shards"], p["writers"], -p["threads_per_process"]))
    client, server = target["client_cpu_ms_per_append"], target["azurite_cpu_ms_per_append"]
    both = client + server
    cap = min(cores * 1000 / both, 1000 / server) if both > 0 and server > 0 else float("nan")
    return {
        "point": f"{target['shards']} chains, {target['writers']} writers",
        "cpu_ms_per_append": both,
        "appends_per_s_cpu_cap": cap,
        "cores": cores,
        "client_appends_per_s_per_core": 1000 / client if client > 0 else float("nan"),
    }


def table(result: dict[str, Any]) -> str:
    """The markdown table of a run, one row per (chains, writers, threads), and the notes."""
    rows = [
        [
            str(p["shards"]),
            str(p["writers"])
            + (
                ""
                if p["threads_per_process"] == 1
                else f" ({p['processes']}x{p['threads_per_process']})"
            ),
            f"{p['appends_per_s']:,.0f}",
            f"{p['p50_ms']:.1f}",
            f"{p['p99_ms']:.1f}",
            f"{p['lost_races_per_append']:.3f} ({p['warmup_lost_races']})",
            f"{p['requests_per_append']:.2f}",
            f"{p['client_cpu_ms_per_append']:.1f} + {p['azurite_cpu_ms_per_append']:.1f}",
            f"{p['load_avg_1min_at_start']:.1f}",
            "yes" if p["chains_valid"] else "**no**",
        ]
        for p in result["points"]
    ]
    header = [
        "chains",
        "writers",
        "appends/s",
        "p50 ms",
        "p99 ms",
        "lost races/append (in warm-up)",
        "requests/append",
        "CPU ms/append (writers + Azurite)",
        "load",
        "valid",
    ]
    v, idle = result["verify"], result["idle_machine"]
    sdk = ", ".join(f"{k} {ms:.1f}" for k, ms in result["sdk_cpu_ms_per_call"].items())
    return (
        markdown_table(header, rows)
        + f"\n\nverify: {v['verified']:,} records in {v['shards']} chains, "
        f"{'intact' if v['ok'] else 'NOT intact'}, {v['verify_s']:.1f} s "
        f"(filled in {v['fill_s']:.1f} s)"
        + f"\n\nwriter CPU ms per SDK call (no injected latency): {sdk}"
        + f"\n\nidle machine ({idle['point']}): {idle['cpu_ms_per_append']:.1f} ms CPU per "
        f"append -> at most {idle['appends_per_s_cpu_cap']:,.0f} appends/s on "
        f"{idle['cores']} cores with Azurite on the same machine; the writers alone "
        f"{idle['client_appends_per_s_per_core']:,.0f} appends/s per core"
    )


def save(result: dict[str, Any], path: Path = RESULTS) -> None:
    """Write ``results.audit_scale`` into ``path``, keeping every other key."""
    document: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    document.setdefault("results", {})["audit_scale"] = {
        **result,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_notes(),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def main(argv: Sequence[str] = ()) -> int:
    quick = "--quick" in argv
    if quick:
        result = run(
            writers=(1, 4),
            layouts={"single_chain": 1, "sharded_8": 8},
            window_s=1.0,
            verify_records=2_000,
            threaded=((8, 4, 4),),
            warmup_s=0.5,
        )
    else:
        result = run()
    print(table(result))
    print(f"\n{result['duration_s']:.0f} s in all (load average {os.getloadavg()})")
    if not quick:
        save(result)
        print(f"results: {RESULTS} (results.audit_scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
