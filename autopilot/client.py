"""How CLI commands reach the running service: find it through the data folder, then speak HTTP.

A command that starts work (retrain, rollback, replay) must run inside the long-lived service,
never in the short-lived CLI process, whose exit would orphan the job it started.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autopilot.serve import KEY_FILE, SERVE_MARKER
from shared.errors import BadEvent
from shared.settings import parse_keys


class NoService(Exception):
    """No running service was found for the data folder, and none was named with --url."""


@dataclass(frozen=True, slots=True)
class Target:
    """A running service: its base URL and the function key to call it with."""

    url: str
    key: str
    found_in: Path | None = None  # the serve marker it was found through, if not given


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/health", timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def running_service(data_dir: Path) -> str | None:
    """The URL in ``<data_dir>/serve.json`` if that service is alive and answers, else None."""
    try:
        marker = json.loads((data_dir / SERVE_MARKER).read_text())
        url, pid = str(marker["url"]), int(marker["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) and _healthy(url) else None


def function_key(data_dir: Path, given: str | None) -> str:
    """--key, else $AUTOPILOT_KEY, else the first of $AUTOPILOT_FUNCTION_KEYS, else the key
    ``autopilot serve`` generated into the data folder; '' if none."""
    if given:
        return given
    if os.environ.get("AUTOPILOT_KEY"):
        return os.environ["AUTOPILOT_KEY"]
    keys = parse_keys(os.environ.get("AUTOPILOT_FUNCTION_KEYS", ""))
    if keys:
        return next(iter(keys.values()))
    try:
        stored = json.loads((data_dir / KEY_FILE).read_text())
        return str(next(iter(stored.values())))
    except (OSError, ValueError, AttributeError, StopIteration):
        return ""


def find_target(data_dir: Path, url: str | None, key: str | None) -> Target | None:
    """--url if given, else the service running on ``data_dir``, else None."""
    if url:
        return Target(url.rstrip("/"), function_key(data_dir, key))
    found = running_service(data_dir)
    if found is None:
        return None
    return Target(found, function_key(data_dir, key), data_dir / SERVE_MARKER)


def require_target(data_dir: Path, url: str | None, key: str | None, command: str) -> Target:
    """Like :func:`find_target`, but a command that starts work refuses without a service."""
    target = find_target(data_dir, url, key)
    if target is None:
        raise NoService(
            f"{command} needs the running service: none is running for data dir {data_dir} "
            f"(no live {data_dir / SERVE_MARKER}); start `.venv/bin/autopilot serve "
            f"--data-dir {data_dir}` first, or pass --url URL"
        )
    return target


def shown_url(url: str) -> str:
    """``url`` for a message: user info and query values masked (they may carry keys)."""
    url = re.sub(r"#.*", "#***", re.sub(r"//[^/?#]*@", "//***@", url), flags=re.DOTALL)
    return re.sub(r"([?&][^=&#]*=)[^&#]*", r"\1***", url)


def check_url(url: str) -> None:
    """A service base URL (``http://127.0.0.1:7071``), or BadEvent; the key goes in --key."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadEvent(f"--url must be an http(s) URL, got {shown_url(url)!r}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise BadEvent(
            f"--url must be the service's base URL, e.g. http://127.0.0.1:7071, without "
            f"user:password@, ?query or #fragment (pass the key with --key), got {shown_url(url)!r}"
        )


def call(
    target: Target,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the service: (status, parsed JSON body or None)."""
    check_url(target.url)
    data = raw_body if raw_body is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        target.url + path,
        data=data,
        method=method,
        headers={
            "Content-Type": "application/json",
            "x-functions-key": target.key,
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise NoService(
            f"cannot reach the service at {shown_url(target.url)}: {exc.reason}"
        ) from exc
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, {"error": raw.decode("utf-8", "replace")[:500]}
