"""The ``autopilot`` command line: serve, replay, audit, cycles, policy, approve/deny.

Exit codes: 0 ok, 1 a check failed (e.g. ``audit verify`` found tampering), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.errors import AutopilotError, BadEvent, NotFound, PolicyError, SettingsError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_POLICY = Path("examples/policy.yaml")


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("AUTOPILOT_DATA_DIR") or ".autopilot")


def _policy_path(args: argparse.Namespace) -> Path:
    raw = getattr(args, "policy", None) or os.environ.get("AUTOPILOT_POLICY")
    return Path(raw) if raw else DEFAULT_POLICY


def _store(data_dir: Path) -> Any:
    from shared.adapters.sqlite_store import SqliteStateStore

    return SqliteStateStore(data_dir / "state.db")


def _audit(data_dir: Path) -> Any:
    from shared.adapters.sqlite_audit import SqliteAuditLog

    return SqliteAuditLog(data_dir / "audit.db")


def _print_json(data: Any) -> None:
    """Strict JSON; ``data`` may hold records written one by one (``_record``, ``_cycle``)."""
    from shared.json_out import document

    print(document(data, indent=2))


def _record(record: Any) -> Any:
    from shared.json_out import encode

    return encode(record.to_json, {"seq": record.seq}, indent=2)


def _cycle(cycle: Any) -> Any:
    from shared.json_out import encode

    return encode(cycle.to_json, {"id": cycle.id}, indent=2)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _short(text: str | None, limit: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- policy -----------------------------------------------------------------------------


def cmd_policy_validate(args: argparse.Namespace) -> int:
    from shared.policy import load_policy

    policy = load_policy(args.file)
    for name in policy:
        spec = policy.models[name]
        endpoint = spec.rollout.endpoint if spec.rollout else "(no rollout)"
        print(
            f"ok  {name}: mode {policy.mode(name)}, gate on {spec.gate.primary_metric}, "
            f"endpoint {endpoint}"
        )
    print(f"{args.file}: valid, {len(policy.models)} model(s)")
    return EXIT_OK


# --- audit ------------------------------------------------------------------------------


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise UsageError(f"--since must be an ISO 8601 time, got {raw!r}") from exc
    if value.tzinfo is None:
        raise UsageError("--since needs a time zone, e.g. 2026-01-01T00:00:00+00:00")
    return value


def cmd_audit_list(args: argparse.Namespace) -> int:
    records = _audit(_data_dir(args)).query(
        model=args.model,
        cycle=args.cycle,
        kind=args.kind,
        since=_since(args.since),
        limit=args.limit,
    )
    if args.json:
        _print_json([_record(r) for r in records])
        return EXIT_OK
    rows = [
        [
            str(r.seq),
            r.time.strftime("%Y-%m-%d %H:%M:%S"),
            r.kind.value,
            r.actor,
            r.model or "",
            _short(r.cycle, 24),
            _short(r.summary, 50),
            _short(r.reason, 60),
        ]
        for r in records
    ]
    print(
        _table(rows, ["SEQ", "TIME (UTC)", "KIND", "ACTOR", "MODEL", "CYCLE", "SUMMARY", "REASON"])
    )
    return EXIT_OK


def cmd_audit_show(args: argparse.Namespace) -> int:
    record = _audit(_data_dir(args)).get(args.seq)
    if record is None:
        raise NotFound(f"no audit record {args.seq}")
    _print_json(_record(record))
    return EXIT_OK


def _anchor(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isascii() or not seq.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError(f"--anchor must look like SEQ:SHA256HEX, not {text!r}")
    return int(seq), digest.lower()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The chain alone cannot show records cut off its end, or every hash recomputed after an
    edit; a head noted elsewhere earlier (``--anchor SEQ:HASH``) can."""
    log = _audit(_data_dir(args))
    result = log.verify()
    ok, first_bad, problem = result.ok, result.first_bad_seq, result.problem
    if ok and args.anchor is not None:
        seq, digest = args.anchor
        anchored = log.get(seq)
        if anchored is None:
            ok, first_bad = False, seq
            problem = f"anchored record {seq} is gone: the log was cut back to {result.records}"
        elif anchored.hash != digest:
            ok, first_bad = False, seq
            problem = f"record {seq} no longer has the anchored hash: the log was rewritten"
    newest = log.query(limit=1)
    head = {"seq": newest[0].seq, "hash": newest[0].hash} if newest else None
    if args.json:
        _print_json(
            {
                "ok": ok,
                "records": result.records,
                "first_bad_seq": first_bad,
                "problem": problem,
                "head": head,
            }
        )
    elif ok:
        anchored_text = f"; anchor {args.anchor[0]} matches" if args.anchor else ""
        print(f"audit chain intact: {result.records} records verified{anchored_text}")
        if head:
            print(
                f"head: {head['seq']}:{head['hash']}\n"
                "  (keep it somewhere else; `autopilot audit verify --anchor` with it later shows"
                " whether records were cut off or rewritten since)"
            )
    else:
        print(f"AUDIT CHAIN BROKEN at record {first_bad}: {problem}")
    return EXIT_OK if ok else EXIT_CHECK_FAILED


# --- cycles -----------------------------------------------------------------------------


def cmd_cycles_list(args: argparse.Namespace) -> int:
    cycles = _store(_data_dir(args)).list_cycles(args.model, args.active)
    if args.json:
        _print_json([_cycle(c) for c in cycles])
        return EXIT_OK
    rows = [
        [
            c.id,
            c.model,
            c.state.value,
            c.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            c.candidate_version or "",
            str(c.coalesced),
            _short(c.reason, 60),
        ]
        for c in cycles
    ]
    print(
        _table(
            rows, ["CYCLE", "MODEL", "STATE", "STARTED (UTC)", "CANDIDATE", "COALESCED", "REASON"]
        )
    )
    return EXIT_OK


def describe_cycle(cycle: Any, records: list[Any]) -> str:
    """A reviewer's view of one cycle: state, gate table, rollout, audit trail."""
    lines = [
        f"cycle {cycle.id}  model {cycle.model}  state {cycle.state.value}",
        f"  trigger: {_trigger_text(cycle)[:200]}",
        f"  job: {cycle.job_name or '-'}   candidate: v{cycle.candidate_version or '-'}   "
        f"champion: v{cycle.champion_version or '-'}   coalesced signals: {cycle.coalesced}",
        f"  reason: {cycle.reason}",
    ]
    if cycle.decision:
        lines.append(
            f"\nevaluation gate: {'PASSED' if cycle.decision['passed'] else 'FAILED'}"
            f" — {cycle.decision['summary']}"
        )
        rows = [
            [
                r["rule"],
                r["metric"] or "",
                _num(r["observed"]),
                _num(r["threshold"]),
                "pass" if r["passed"] else "FAIL",
                r["detail"],
            ]
            for r in cycle.decision["rules"]
        ]
        lines.append(_table(rows, ["RULE", "METRIC", "OBSERVED", "THRESHOLD", "RESULT", "DETAIL"]))
    if cycle.rollout:
        ro = cycle.rollout
        lines.append(
            f"\nrollout on {ro['endpoint']}: new {ro['deployment']}, "
            f"previous {ro.get('previous') or '-'}"
        )
        for step in ro.get("steps", []):
            lines.append(f"  {step['at']}  traffic {step['traffic']}")
        for check in ro.get("checks", []):
            lines.append(f"  {check['at']}  health {check['verdict']}: {check['why']}")
    lines.append("\naudit trail:")
    for r in records:
        lines.append(
            f"  #{r.seq} {r.time.strftime('%H:%M:%S')} {r.kind.value:<14} "
            f"{r.actor:<10} {r.summary}" + (f" — {r.reason}" if r.reason else "")
        )
    return "\n".join(lines)


def _trigger_text(cycle: Any) -> str:
    from shared.json_out import encode

    return encode(lambda: cycle.trigger, {}).text


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_cycles_show(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    cycle = _store(data_dir).get_cycle(args.cycle)
    if cycle is None:
        raise NotFound(f"no cycle {args.cycle!r}")
    records = _audit(data_dir).query(cycle=cycle.id)
    if args.json:
        _print_json({"cycle": _cycle(cycle), "audit": [_record(r) for r in records]})
    else:
        print(describe_cycle(cycle, records))
    return EXIT_OK


# --- approvals ----------------------------------------------------------------------------


OPERATOR_COMMANDS = {
    "approve": ("cycle", "/api/cycles/{}/approve"),
    "deny": ("cycle", "/api/cycles/{}/deny"),
    "retrain": ("model", "/api/models/{}/retrain"),
    "rollback": ("model", "/api/models/{}/rollback"),
}


def cmd_operator(args: argparse.Namespace) -> int:
    """approve / deny / retrain / rollback: over the API with --url, else in-process."""
    target_kind, route = OPERATOR_COMMANDS[args.command]
    target = getattr(args, target_kind)
    if args.url:
        from autopilot.serve import post_json

        key = args.key or os.environ.get("AUTOPILOT_KEY", "")
        body = json.dumps({"reason": args.reason}).encode()
        status, text = post_json(args.url.rstrip("/") + route.format(target), key, body)
        print(f"{status} {text}")
        return EXIT_OK if status < 300 else EXIT_USAGE if status < 500 else EXIT_CHECK_FAILED
    from shared.bootstrap import bootstrap
    from shared.messages import Approve, Deny, ManualRollback, RetrainRequested
    from shared.settings import AppSettings
    from shared.wiring import build_services

    settings = AppSettings.from_env(
        {
            **os.environ,
            "AUTOPILOT_DATA_DIR": str(_data_dir(args)),
            "AUTOPILOT_POLICY": str(_policy_path(args)),
        }
    )
    bus = bootstrap(build_services(settings))
    actor = args.actor or f"cli:{os.environ.get('USER', 'unknown')}"
    kind = {
        "approve": Approve,
        "deny": Deny,
        "retrain": RetrainRequested,
        "rollback": ManualRollback,
    }[args.command]
    bus.handle(kind(target, actor, args.reason, f"cli:{actor}"))
    store = bus.services.store
    cycle = (
        store.get_cycle(target)
        if target_kind == "cycle"
        else next(iter(store.list_cycles(target)), None)
    )
    state = cycle.state.value if cycle else "?"
    print(
        f"{args.command} {target}: cycle {cycle.id if cycle else '-'} is {state} "
        f"({actor}: {args.reason})"
    )
    return EXIT_OK


# --- serve and replay ----------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from autopilot.serve import serve

    return serve(
        host=args.host, port=args.port, policy=_policy_path(args), data_dir=_data_dir(args)
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from autopilot.demo import DemoFailed, run_demo

    data_dir = Path(args.data_dir) if args.data_dir else Path(".autopilot/demo")
    try:
        return run_demo(
            scenario=args.scenario, data_dir=data_dir, fresh=not args.resume, port=args.port
        )
    except DemoFailed as exc:
        print(f"autopilot demo: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED


def cmd_replay(args: argparse.Namespace) -> int:
    from autopilot.serve import replay

    return replay(
        Path(args.file),
        policy=_policy_path(args),
        data_dir=_data_dir(args),
        url=args.url,
        key=args.key,
    )


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        help="state, audit and platform data (default: $AUTOPILOT_DATA_DIR or ./.autopilot)",
    )
    parser = argparse.ArgumentParser(
        prog="autopilot", description="Event-driven MLOps automation for Azure Machine Learning."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="serve the function app over HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7071)
    p.add_argument("--policy", help=f"policy file (default: $AUTOPILOT_POLICY or {DEFAULT_POLICY})")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo", parents=[common], help="the closed loop on the embedded default, live"
    )
    p.add_argument(
        "--scenario", choices=["improve", "worse", "unhealthy", "alert"], default="improve"
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the data folder's state (default: fresh)"
    )
    p.add_argument("--port", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "replay", parents=[common], help="deliver stored Event Grid / CloudEvents / alert payloads"
    )
    p.add_argument("file", help="a JSON file: an Event Grid or CloudEvents array, or an alert")
    p.add_argument("--policy")
    p.add_argument("--url", help="a running service's base URL (default: replay in-process)")
    p.add_argument("--key", help="function key for --url (default: $AUTOPILOT_KEY)")
    p.set_defaults(func=cmd_replay)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_cmd", required=True
    )
    p = audit.add_parser("list", parents=[common])
    p.add_argument("--model")
    p.add_argument("--cycle")
    p.add_argument("--kind")
    p.add_argument("--since", help="ISO 8601 time with zone")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_list)
    p = audit.add_parser("show", parents=[common])
    p.add_argument("seq", type=int)
    p.set_defaults(func=cmd_audit_show)
    p = audit.add_parser("verify", parents=[common])
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--anchor",
        type=_anchor,
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify: fail if that record is gone or changed",
    )
    p.set_defaults(func=cmd_audit_verify)

    cycles = sub.add_parser("cycles", help="retraining cycles").add_subparsers(
        dest="cycles_cmd", required=True
    )
    p = cycles.add_parser("list", parents=[common])
    p.add_argument("--model")
    p.add_argument("--active", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cycles_list)
    p = cycles.add_parser("show", parents=[common])
    p.add_argument("cycle")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cycles_show)

    policy = sub.add_parser("policy", help="policy files").add_subparsers(
        dest="policy_cmd", required=True
    )
    p = policy.add_parser("validate")
    p.add_argument("file")
    p.set_defaults(func=cmd_policy_validate)

    helps = {
        "approve": "approve a cycle awaiting approval",
        "deny": "deny a cycle awaiting approval",
        "retrain": "start a retraining cycle for a model now",
        "rollback": "instant rollback of a model to its last good deployment",
    }
    for name, (target, _) in OPERATOR_COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=helps[name])
        p.add_argument(target)
        p.add_argument("--reason", required=True)
        p.add_argument("--as", dest="actor", help="who decides (default: cli:$USER)")
        p.add_argument("--policy")
        p.add_argument("--url", help="a running service's base URL (default: in-process)")
        p.add_argument("--key", help="function key for --url (default: $AUTOPILOT_KEY)")
        p.set_defaults(func=cmd_operator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, PolicyError, SettingsError, BadEvent, NotFound) as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AutopilotError as exc:
        print(f"autopilot: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
