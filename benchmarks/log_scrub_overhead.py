"""Log records per second with and without the log scrub (``shared/log_scrub.py``) installed.

    .venv/bin/python benchmarks/log_scrub_overhead.py [records per round]

Run it from another tree (``PYTHONPATH=/path/to/old/tree``) to compare two versions of the
scrub. Rounds with and without the scrub alternate, so load from other processes falls on
both; the best round of each counts. Prints wall-clock records/s and CPU microseconds per
record (``time.process_time``) and the load average: on a shared machine wall-clock figures
are inflated, CPU time less so.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from shared import log_scrub
from shared.redact import Redactor

SECRETS = [f"configured-secret-{n:04d}-value" for n in range(10)]  # 10 settings: 50 forms
URL = "https://acct.blob.core.windows.net/container/blob?sv=2021&se=2026-01-01"


def _cases(logger: logging.Logger) -> dict[str, Callable[[int], None]]:
    def plain(n: int) -> None:
        logger.info("cycle %s deferred: GET %s failed with HTTP %d", f"c-{n}", URL, 503)

    def extras(n: int) -> None:
        fields = {"cycle": f"c-{n}", "model": "credit-risk", "url": URL, "attempt": n}
        logger.info("cycle deferred", extra=fields)

    return {"plain %-args": plain, "3 extra= fields": extras}


def _handlers(count: int) -> list[logging.Handler]:
    made: list[logging.Handler] = []
    for _ in range(count):
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        made.append(handler)
    return made


def _round(log_one: Callable[[int], None], records: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to log ``records`` records."""
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(records):
        log_one(n)
    return time.perf_counter() - wall, time.process_time() - cpu


def _switch() -> Callable[[bool], None]:
    """Turns the installed scrub (factory and ``Handler.handle`` hook) on and off."""
    off = (logging.getLogRecordFactory(), logging.Handler.handle)
    log_scrub.install(Redactor(SECRETS))
    on = (logging.getLogRecordFactory(), logging.Handler.handle)

    def scrubbing(enabled: bool) -> None:
        factory, handle = on if enabled else off
        logging.setLogRecordFactory(factory)
        logging.Handler.handle = handle  # type: ignore[method-assign]  # as install() does

    return scrubbing


def main(argv: list[str]) -> int:
    records = int(argv[0]) if argv else 20_000
    logger = logging.getLogger("azure.core.pipeline")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    scrubbing = _switch()
    print(f"log scrub from {log_scrub.__file__}; load average {os.getloadavg()}")
    for handler_count in (1, 2):
        logger.handlers = _handlers(handler_count)
        for name, log_one in _cases(logger).items():
            best: dict[bool, tuple[float, float]] = {}
            for _ in range(5):
                for enabled in (False, True):
                    scrubbing(enabled)
                    wall, cpu = _round(log_one, records)
                    seen = best.get(enabled, (wall, cpu))
                    best[enabled] = (min(wall, seen[0]), min(cpu, seen[1]))
            _print(f"{name}, {handler_count} handler(s)", records, best)
    print(f"load average {os.getloadavg()}")
    return 0


def _print(case: str, records: int, best: dict[bool, Any]) -> None:
    (off_wall, off_cpu), (on_wall, on_cpu) = best[False], best[True]
    print(
        f"{case:32s} off {records / off_wall:9,.0f} rec/s ({off_cpu / records * 1e6:5.2f} us CPU)"
        f"  on {records / on_wall:9,.0f} rec/s ({on_cpu / records * 1e6:5.2f} us CPU)"
        f"  +{(on_cpu - off_cpu) / records * 1e6:5.2f} us CPU/record"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
