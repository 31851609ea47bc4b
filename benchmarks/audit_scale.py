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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from benchmarks.common import ROOT, machine_notes, markdown_table, percentile
from shared.adapters.table_audit import TableAuditLog
from shared.errors import TransientError
from shared.model import AuditEntry, AuditKind

LATENCY_S = 0.005
WRITERS = (1, 2, 4, 8, 16, 32)
LAYOUTS = {"single_chain": 1, "sharded_8": 8, "sharded_32": 32}
WINDOW_S = 4.0
VERIFY_RECORDS = 100_000
VERIFY_SHARDS = 32
RESULTS = ROOT / "benchmarks" / "results.json"


class DelayedTransport(RequestsTransport):  # type: ignore[misc]  # azure-core ships RequestsTransport untyped (subclass of Any)
    """Every request waits ``delay_s`` before it is sent: a storage account's round trip."""

    def __init__(self, delay_s: float = LATENCY_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def send(self, request: Any, **kwargs: Any) -> Any:
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


def _writer(
    connection: str, prefix: str, shards: int, index: int, start: Any, window_s: float, out: Any
) -> None:
    """One writer process: warm up (one append), wait for the others, append until the end
    of the window; report appends, latencies and lost races."""
    try:
        log = TableAuditLog(
            connection, table_prefix=prefix, shards=shards, transport=DelayedTransport()
        )
        log.append(_entry(index, -1))
        warm_lost = log.stats.lost_races
        start.wait()
        cpu = time.process_time()
        end = time.perf_counter() + window_s  # the barrier lets every writer go at once
        latencies: list[float] = []
        i = 0
        while time.perf_counter() < end:
            began = time.perf_counter()
            log.append(_entry(index, i))
            latencies.append(time.perf_counter() - began)
            i += 1
        cpu = time.process_time() - cpu
        out.put((index, latencies, log.stats.lost_races - warm_lost, cpu, ""))
    except BaseException as exc:  # report, do not hang the parent
        out.put((index, [], 0, 0.0, f"{type(exc).__name__}: {exc}"))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_point(
    connection: str, shards: int, writers: int, window_s: float, server_pid: int = 0
) -> dict[str, Any]:
    """``writers`` processes appending to a fresh log of ``shards`` chains for ``window_s``."""
    prefix = "b" + uuid.uuid4().hex[:12]
    TableAuditLog(connection, table_prefix=prefix, shards=shards).verify()  # the table
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer, args=(connection, prefix, shards, i, start, window_s, out), daemon=True
        )
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    start.wait(timeout=120)
    server_cpu, load = _cpu_s(server_pid), os.getloadavg()[0]
    answers = [out.get(timeout=window_s + 120) for _ in procs]
    server_cpu = _cpu_s(server_pid) - server_cpu
    for p in procs:
        p.join(30)
    errors = [e for *_, e in answers if e]
    latencies = [x for _, lat, *_ in answers for x in lat]
    appends = len(latencies)
    lost = sum(n for _, _, n, _, _ in answers)
    client_cpu = sum(c for _, _, _, c, _ in answers)
    log = TableAuditLog(connection, table_prefix=prefix, shards=shards)
    checked = log.verify()
    return {
        "shards": shards,
        "writers": writers,
        "appends": appends,
        "appends_per_s": appends / window_s,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "lost_races_per_append": lost / appends if appends else float("nan"),
        "client_cpu_ms_per_append": client_cpu / appends * 1000 if appends else float("nan"),
        "azurite_cpu_ms_per_append": server_cpu / appends * 1000 if appends else float("nan"),
        "load_avg_1min_at_start": load,
        "chains_valid": checked.ok,
        "records_verified": checked.records,
        "errors": errors[:3],
    }


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
) -> dict[str, Any]:
    from tests.integration.azurite import start_azurite

    layouts = LAYOUTS if layouts is None else layouts
    server = start_azurite()
    began = time.perf_counter()
    try:
        points = {
            name: [
                run_point(server.connection_string, shards, w, window_s, server.process.pid)
                for w in writers
            ]
            for name, shards in layouts.items()
        }
        try:
            verified = time_verify(server.connection_string, verify_records, VERIFY_SHARDS)
        except Exception as exc:  # keep the appends' figures; say what failed
            verified = {
                "records": 0,
                "shards": VERIFY_SHARDS,
                "fill_s": float("nan"),
                "verify_s": float("nan"),
                "ok": False,
                "verified": 0,
                "error": repr(exc),
            }
    finally:
        server.stop()
    sharded = {name: pts for name, pts in points.items() if name != "single_chain"}
    return {
        "latency_injected_ms": LATENCY_S * 1000,
        "window_s": window_s,
        "azurite": server.version,
        "single_chain": {str(p["writers"]): p["appends_per_s"] for p in points["single_chain"]},
        "sharded": {
            str(LAYOUTS.get(name, name)): {str(p["writers"]): p["appends_per_s"] for p in pts}
            for name, pts in sharded.items()
        },
        "points": [p for pts in points.values() for p in pts],
        "verify": verified,
        "duration_s": time.perf_counter() - began,
    }


def table(result: dict[str, Any]) -> str:
    """The markdown table of a run, one row per (chains, writers)."""
    rows = [
        [
            str(p["shards"]),
            str(p["writers"]),
            f"{p['appends_per_s']:,.0f}",
            f"{p['p50_ms']:.1f}",
            f"{p['p99_ms']:.1f}",
            f"{p['lost_races_per_append']:.3f}",
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
        "lost races/append",
        "CPU ms/append (writers + Azurite)",
        "load",
        "valid",
    ]
    v = result["verify"]
    return (
        markdown_table(header, rows)
        + f"\n\nverify: {v['verified']:,} records in {v['shards']} chains, "
        f"{'intact' if v['ok'] else 'NOT intact'}, {v['verify_s']:.1f} s "
        f"(filled in {v['fill_s']:.1f} s)"
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
