"""Start ``autopilot serve`` as a real process on a free loopback port, for HTTP tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KEY = "k-tests-0123456789abcdefghij"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = KEY,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key:
            all_headers["x-functions-key"] = key
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data) if data else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_serve(
    data_dir: Path,
    policy: Path,
    *,
    env: dict[str, str] | None = None,
    keys: str | None = f"tests={KEY}",
    timeout: float = 60.0,
) -> Served:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"serve-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    full_env.pop("AUTOPILOT_FUNCTION_KEYS", None)
    if keys is not None:
        full_env["AUTOPILOT_FUNCTION_KEYS"] = keys
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autopilot.cli",
            "serve",
            "--port",
            "0",
            "--policy",
            str(policy),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)", text)
        if match:
            return Served(proc, match.group(1), data_dir, log)
        if proc.poll() is not None:
            raise RuntimeError(f"autopilot serve exited {proc.returncode}:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"autopilot serve did not start in {timeout}s:\n{log.read_text()}")
