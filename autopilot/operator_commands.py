"""approve, deny, retrain, rollback and replay: the CLI commands that change something.

Those that start work (retrain, rollback, replay) always go to the running service (``--url``,
or the one ``autopilot serve`` registered in the data folder). approve/deny do too when a
service runs; without one they apply in-process, after checking that the policy knows the
cycle's model, so they either work or refuse before changing anything.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopilot.client import Target, call, find_target, require_target
from autopilot.serve import eventgrid_path
from shared.envelope import load_json
from shared.errors import BadEvent, Conflict, NotFound, PolicyError

ROUTES = {
    "approve": ("cycle", "/api/cycles/{}/approve"),
    "deny": ("cycle", "/api/cycles/{}/deny"),
    "retrain": ("model", "/api/models/{}/retrain"),
    "rollback": ("model", "/api/models/{}/rollback"),
}
STARTS_WORK = {"retrain", "rollback"}


class RequestFailed(Exception):
    """The service refused the request: its status and message, for exit code 2 (4xx) or 1."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_text(status: int, body: Any) -> str:
    message = body.get("error") if isinstance(body, dict) else None
    if status == 401:
        return (
            "the service refused the function key (401); pass --key KEY or set AUTOPILOT_KEY "
            "(a generated key is in the data dir's function_keys.json)"
        )
    return str(message or body or f"HTTP {status}")


def _cycle_words(cycle: dict[str, Any] | None) -> str:
    if not cycle:
        return "no cycle"
    reason = str(cycle.get("reason") or "").replace("\n", " ")
    return f"cycle {cycle['id']} is {cycle['state']}" + (f" ({reason})" if reason else "")


def sentence(command: str, target: str, body: dict[str, Any]) -> str:
    """What a successful operator request did, in one sentence with the cycle's state."""
    cycle = body.get("cycle")
    if command == "retrain":
        outcome = body.get("outcome", "started")
        if outcome == "started":
            return f"retrain {target}: started a new cycle; {_cycle_words(cycle)}"
        if outcome == "coalesced":
            return (
                f"retrain {target}: a cycle is already active, so the request was coalesced "
                f"into it; {_cycle_words(cycle)}"
            )
        if outcome == "already handled":
            return f"retrain {target}: this request was already handled; {_cycle_words(cycle)}"
        return f"retrain {target}: no cycle started (the model is in observe mode: dry run audited)"
    if command == "rollback":
        return f"rolled back {target}; {_cycle_words(cycle)}"
    verb = "approved" if command == "approve" else "denied"
    return f"{verb} cycle {target}; {_cycle_words(cycle)}"


def over_http(command: str, subject: str, reason: str, where: Target) -> dict[str, Any]:
    """Send one operator request; its JSON answer, or RequestFailed."""
    _, route = ROUTES[command]
    status, body = call(where, "POST", route.format(subject), {"reason": reason})
    if status >= 300 or not isinstance(body, dict):
        raise RequestFailed(status, f"{command} {subject} refused: {error_text(status, body)}")
    return body


def in_process(
    command: str, cycle_id: str, reason: str, actor: str, data_dir: Path, policy: Path
) -> dict[str, Any]:
    """approve/deny without a service: check everything first, then apply."""
    from composition.bootstrap import bootstrap
    from composition.wiring import build_services
    from shared.messages import Approve, Deny
    from shared.model import CycleState
    from shared.settings import AppSettings

    if not (data_dir / "state.db").is_file():
        raise NotFound(
            f"data dir {data_dir} holds no autopilot data (no state.db) and no service runs "
            "there; pass the --data-dir that `autopilot serve` uses"
        )
    settings = AppSettings.from_env(
        {**os.environ, "AUTOPILOT_DATA_DIR": str(data_dir), "AUTOPILOT_POLICY": str(policy)}
    )
    services = build_services(settings)
    cycle = services.store.get_cycle(cycle_id)
    if cycle is None:
        raise NotFound(f"no cycle {cycle_id!r} in {data_dir}")
    if services.policy.model(cycle.model) is None:
        raise PolicyError(
            f"cycle {cycle_id} is for model {cycle.model!r}, which policy {policy} does not "
            f"name; pass --policy with the policy its service runs (nothing was changed)"
        )
    if cycle.state is not CycleState.AWAITING_APPROVAL:
        raise Conflict(f"cycle {cycle_id} is {cycle.state.value}, not AWAITING_APPROVAL")
    kind = Approve if command == "approve" else Deny
    bootstrap(services).handle(kind(cycle_id, actor, reason, f"cli:{actor}:{services.new_id()}"))
    after = services.store.get_cycle(cycle_id)
    return {"cycle": after.to_json() if after else None}


def operator(
    command: str,
    subject: str,
    *,
    reason: str,
    actor: str | None,
    data_dir: Path,
    policy: Path,
    url: str | None,
    key: str | None,
) -> tuple[str, dict[str, Any]]:
    """Run one operator command; (sentence, JSON answer)."""
    if command in STARTS_WORK:
        where: Target | None = require_target(data_dir, url, key, command)
    else:
        where = find_target(data_dir, url, key)
    if where is not None:
        if actor:
            reason = f"{reason} (as {actor})"
        body = over_http(command, subject, reason, where)
        via = f" (via {where.url})"
    else:
        name = actor or f"cli:{os.environ.get('USER', 'unknown')}"
        body = in_process(command, subject, reason, name, data_dir, policy)
        via = " (in-process: no service running for this data dir)"
    return sentence(command, subject, body) + via, body


# --- replay ----------------------------------------------------------------------------------


def replay(
    file: Path, *, data_dir: Path, url: str | None, key: str | None
) -> tuple[list[str], dict[str, Any]]:
    """Deliver a stored payload to the running service the way Event Grid / Azure Monitor do;
    (lines saying what the service did with it, JSON answer)."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise BadEvent(f"cannot read {file}: {exc.strerror}") from exc
    payload = load_json(raw, what=str(file))
    if isinstance(payload, list):
        path, what = eventgrid_path(), f"{len(payload)} event(s)"
        headers = {"aeg-event-type": "Notification"}
    elif isinstance(payload, dict) and "schemaId" in payload:
        path, what, headers = "/api/alerts", "1 alert", {}
    else:
        raise BadEvent(f"{file}: expected an Event Grid / CloudEvents array or an alert object")
    where = require_target(data_dir, url, key, "replay")
    started = datetime.now(UTC)
    status, body = call(where, "POST", path, headers=headers, raw_body=raw)
    if status >= 300:
        raise RequestFailed(status, f"replay {file} refused: {error_text(status, body)}")
    lines = [f"delivered {what} from {file} to {where.url}: accepted ({status})"]
    if isinstance(body, dict) and body.get("result") == "ignored":
        lines.append(f"  ignored: {body.get('reason')}")
    elif isinstance(body, dict) and body.get("model"):
        lines.append(f"  {body.get('result')}: {body.get('as')} for model {body.get('model')}")
    _, audit = call(where, "GET", "/api/audit?since=" + started.isoformat().replace("+", "%2B"))
    records = sorted(
        (audit or {}).get("records", []) if isinstance(audit, dict) else [],
        key=lambda r: int(r.get("seq", 0)),
    )
    for record in records:
        reason = f" — {record['reason']}" if record.get("reason") else ""
        lines.append(f"  #{record['seq']} {record['kind']}: {record['summary']}{reason}")
    return lines, {"status": status, "response": body, "audit": records}


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
