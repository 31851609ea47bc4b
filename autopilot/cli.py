"""The ``autopilot`` command line: serve, replay, audit, cycles, policy, approve/deny.

Exit codes: 0 ok, 1 a check failed (e.g. ``audit verify`` found tampering), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.errors import (
    AutopilotError,
    BadEvent,
    Conflict,
    NotFound,
    PolicyError,
    SettingsError,
)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_POLICY = Path("examples/policy.yaml")


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("AUTOPILOT_DATA_DIR") or ".autopilot")


def _policy_path(args: argparse.Namespace) -> Path:
    raw = getattr(args, "policy", None) or os.environ.get("AUTOPILOT_POLICY")
    return Path(raw) if raw else DEFAULT_POLICY


def _existing(data_dir: Path, name: str) -> Path:
    """A read command's database: refuse a data dir that holds none (a typo), never create it."""
    path = data_dir / name
    if not data_dir.is_dir():
        raise UsageError(
            f"data dir {data_dir} does not exist; pass the --data-dir that `autopilot serve` uses"
        )
    if not path.is_file():
        raise UsageError(
            f"data dir {data_dir} holds no autopilot data ({name} is missing); pass the "
            "--data-dir that `autopilot serve` uses"
        )
    return path


def _store(data_dir: Path) -> Any:
    from shared.adapters.sqlite_store import SqliteStateStore

    return SqliteStateStore(_existing(data_dir, "state.db"))


def _audit(data_dir: Path) -> Any:
    from shared.adapters.sqlite_audit import SqliteAuditLog

    return SqliteAuditLog(_existing(data_dir, "audit.db"))


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
    from shared.policy_check import environment_problems

    policy = load_policy(args.file)
    problems = environment_problems(Path(args.file), os.environ, Path.cwd())
    if problems:
        raise PolicyError("\n".join(problems))
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
    """A duration back from now (15m, 2h, 1d) or an ISO 8601 time with a zone."""
    if not raw:
        return None
    from shared.policy import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(raw))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise UsageError(
            f"--since takes a duration (15m, 2h, 1d) or an ISO 8601 time, got {raw!r}"
        ) from exc
    if value.tzinfo is None:
        raise UsageError("--since needs a time zone, e.g. 2026-01-01T00:00:00+00:00")
    return value


def _kinds() -> list[str]:
    """The kinds ``audit list`` shows (anchors have a chain of their own: ``audit anchor``)."""
    from shared.model import AuditKind

    return [k.value for k in AuditKind if k is not AuditKind.ANCHOR]


def _kind(raw: str | None) -> str | None:

    valid = _kinds()
    if raw is not None and raw not in valid:
        raise UsageError(f"--kind {raw!r} is not an audit kind; choose one of {', '.join(valid)}")
    return raw


def cmd_audit_list(args: argparse.Namespace) -> int:
    kind, since = _kind(args.kind), _since(args.since)
    records = _audit(_data_dir(args)).query(
        model=args.model,
        cycle=args.cycle,
        kind=kind,
        since=since,
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


def _anchor(text: str) -> tuple[int, str, bool]:
    """``SEQ:HASH`` (a record of the first chain) or ``aSEQ:HASH`` (of the anchor chain)."""
    in_anchors = text[:1] in ("a", "A")
    seq, sep, digest = text[1 if in_anchors else 0 :].partition(":")
    if not sep or not seq.isascii() or not seq.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError(
            f"--anchor must look like SEQ:SHA256HEX or aSEQ:SHA256HEX, not {text!r}"
        )
    return int(seq), digest.lower(), in_anchors


def cmd_audit_anchor(args: argparse.Namespace) -> int:
    """Commit every chain's head in the anchor chain (the reconcile timer does it too)."""
    record = _audit(_data_dir(args)).anchor()
    if args.json:
        _print_json(_record(record))
        return EXIT_OK
    heads = ", ".join(f"chain {c} at {s}" for c, s, _ in record.evidence["heads"])
    print(f"anchor a{record.seq}:{record.hash} ({heads})")
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The chain alone cannot show records cut off its end, or every hash recomputed after an
    edit; a head noted elsewhere earlier (``--anchor SEQ:HASH``) can. An empty log where the
    state store shows earlier activity was lost or emptied: that fails too."""
    from autopilot.state_files import AUDIT_DB, damage, earlier_activity

    data_dir = _data_dir(args)
    unreadable = damage(data_dir / AUDIT_DB)
    if unreadable:
        print(f"AUDIT LOG UNREADABLE: {data_dir / AUDIT_DB} {unreadable}")
        return EXIT_CHECK_FAILED
    log = _audit(data_dir)
    result = log.verify()
    ok, first_bad, problem = result.ok, result.first_bad_seq, result.problem
    activity = earlier_activity(data_dir) if ok and result.records == 0 else None
    if activity:
        ok, problem = False, f"the audit log has no records although {activity}: it was lost"
    if ok and args.anchor is not None:
        seq, digest, in_anchors = args.anchor
        anchored = log.get_anchor(seq) if in_anchors else log.get(seq)
        if anchored is None:
            ok, first_bad = False, seq
            cut = "the anchor chain was cut back" if in_anchors else "the log was cut back"
            cut += "" if in_anchors else f" to {result.records}"
            problem = f"anchored record {seq} is gone: {cut}"
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
            anchor = f"{head['seq']}:{head['hash']}"
            again = f"{AP} audit verify --data-dir {shlex.quote(str(data_dir))} --anchor {anchor}"
            print(
                f"head: {anchor}\n"
                "  (keep it somewhere else; later, this command shows whether records were cut"
                f" off or rewritten since:\n  {again})"
            )
    elif first_bad is None:
        print(f"AUDIT LOG EMPTIED: {problem}")
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
    from handlers.rollout import traffic_text

    lines = [
        f"cycle {cycle.id}  model {cycle.model}  state {cycle.state.value}",
        f"  trigger: {_trigger_text(cycle)[:200]}",
        f"  job: {cycle.job_name or '-'}   candidate: {cycle.candidate}   "
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
            lines.append(f"  {step['at']}  traffic {traffic_text(step['traffic'])}")
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


# --- operator commands, serve and replay -------------------------------------------------------


def cmd_operator(args: argparse.Namespace) -> int:
    """approve / deny / retrain / rollback: a sentence saying what happened (--json: the answer)."""
    from autopilot.operator_commands import ROUTES, operator

    target_kind, _ = ROUTES[args.command]
    text, body = operator(
        args.command,
        getattr(args, target_kind),
        reason=args.reason,
        actor=args.actor,
        data_dir=_data_dir(args),
        policy=_policy_path(args),
        url=args.url,
        key=args.key,
    )
    if args.json:
        _print_json(body)
    else:
        print(text)
    return EXIT_OK


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
            scenario=args.scenario,
            data_dir=data_dir,
            fresh=not args.resume,
            port=args.port,
            show_cycle=lambda folder, cycle: main(
                ["cycles", "show", cycle, "--data-dir", str(folder)]
            ),
        )
    except DemoFailed as exc:
        print(f"autopilot demo: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED


def cmd_replay(args: argparse.Namespace) -> int:
    from autopilot.operator_commands import replay

    lines, body = replay(Path(args.file), data_dir=_data_dir(args), url=args.url, key=args.key)
    if args.json:
        _print_json(body)
    else:
        print("\n".join(lines))
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------


AP = ".venv/bin/autopilot"  # how the examples call the CLI: not on PATH after set-up
_DATA_HELP = "state, audit and platform data (default: $AUTOPILOT_DATA_DIR, else ./.autopilot)"
_POLICY_HELP = f"policy file (default: $AUTOPILOT_POLICY, else {DEFAULT_POLICY})"
_URL_HELP = (
    "base URL of a running service (default: the service `autopilot serve` registered in the "
    "data dir's serve.json)"
)
_KEY_HELP = (
    "function key for the service (default: $AUTOPILOT_KEY, else the first of "
    "$AUTOPILOT_FUNCTION_KEYS, else the data dir's function_keys.json)"
)

EXAMPLES = {
    "serve": f"""examples:
  {AP} serve --policy examples/policy.yaml
  {AP} serve --policy examples/policy.yaml --port 8080 --data-dir /tmp/autopilot""",
    "demo": f"""examples:
  {AP} demo
  {AP} demo --scenario unhealthy""",
    "replay": f"""examples:
  {AP} replay examples/payloads/alert-drift-fired.json
  {AP} replay examples/payloads/eventgrid-monitor-breach.json --url http://127.0.0.1:7071""",
    "audit list": f"""examples:
  {AP} audit list --since 15m
  {AP} audit list --model credit-risk --kind decision --limit 20""",
    "audit show": f"""examples:
  {AP} audit show 1""",
    "audit verify": f"""examples:
  {AP} audit verify
  {AP} audit verify --anchor <SEQ:HASH printed by an earlier verify>
  {AP} audit verify --anchor <aSEQ:HASH printed by audit anchor>""",
    "audit anchor": f"""examples:
  {AP} audit anchor""",
    "cycles list": f"""examples:
  {AP} cycles list
  {AP} cycles list --model credit-risk --active""",
    "cycles show": f"""examples:
  {AP} cycles show <CYCLE>""",
    "policy validate": f"""examples:
  {AP} policy validate examples/policy.yaml""",
    "approve": f"""examples:
  {AP} approve <CYCLE> --reason 'evidence reviewed'""",
    "deny": f"""examples:
  {AP} deny <CYCLE> --reason 'slice east regressed'""",
    "retrain": f"""examples:
  {AP} retrain credit-risk --reason "new labelled data"
  {AP} retrain credit-risk --reason "refresh" --url http://127.0.0.1:7071 --json""",
    "rollback": f"""examples:
  {AP} rollback credit-risk --reason 'complaints about scores'""",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a missing subcommand names the choices instead of 'required: audit_cmd'."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("the following arguments are required: COMMAND"):
            choices = [
                name
                for action in self._actions
                if isinstance(action, argparse._SubParsersAction)
                for name in action.choices
            ]
            message = f"choose a command: {', '.join(choices)} (see {self.prog} --help)"
        elif "--help" not in message:
            message = f"{message} (see {self.prog} --help)"
        # One line, as every other CLI error (argparse would print the usage block first).
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    """A whole number of 1 or more (``--limit 0`` or ``-1`` would silently list nothing)."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return int(text)


def _command(sub: Any, name: str, help_text: str, example_key: str, **kw: Any) -> Any:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=EXAMPLES[example_key],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )


def _group(sub: Any, name: str, help_text: str, dest: str) -> Any:
    group = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    return group.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=_Parser)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", help=_DATA_HELP)
    parser = _Parser(
        prog="autopilot",
        description="Event-driven MLOps automation for Azure Machine Learning.",
        epilog=f"Start with: {AP} demo   or   {AP} serve --policy examples/policy.yaml\n"
        "Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = _command(sub, "serve", "serve the function app over HTTP", "serve", parents=[common])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7071, help="port to bind (default: 7071)")
    p.add_argument("--policy", metavar="FILE", help=_POLICY_HELP)
    p.set_defaults(func=cmd_serve)

    p = _command(
        sub, "demo", "the closed loop on the embedded default, live", "demo", parents=[common]
    )
    p.add_argument(
        "--scenario",
        choices=["improve", "worse", "unhealthy", "alert", "silent"],
        default="improve",
        help="improve: promoted; worse: the gate rejects; unhealthy: canary rolled back; "
        "alert: health alert after promotion rolls back; silent: no drift, the label-free "
        "performance estimate starts the cycle, promoted (default: improve)",
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the data folder's state (default: fresh)"
    )
    p.add_argument(
        "--port", type=int, default=0, help="port for the service (default: 0, a free port)"
    )
    p.set_defaults(func=cmd_demo)

    p = _command(
        sub,
        "replay",
        "deliver a stored Event Grid / CloudEvents / alert payload to the running service",
        "replay",
        parents=[common],
    )
    p.add_argument("file", help="a JSON file: an Event Grid or CloudEvents array, or an alert")
    p.add_argument("--url", help=_URL_HELP)
    p.add_argument("--key", help=_KEY_HELP)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=cmd_replay)

    audit = _group(sub, "audit", "the audit log", "audit_cmd")
    p = _command(audit, "list", "list audit records, oldest first", "audit list", parents=[common])
    p.add_argument("--model", help="only this model's records (default: all)")
    p.add_argument("--cycle", help="only this cycle's records (default: all)")

    p.add_argument(
        "--kind",
        help=f"only this kind: {', '.join(_kinds())} (default: all)",
    )
    p.add_argument(
        "--since",
        help="a duration back from now (15m, 2h, 1d) or an ISO 8601 time with zone "
        "(default: no limit)",
    )
    p.add_argument(
        "--limit", type=_positive_int, help="at most this many records, 1 or more (default: all)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_audit_list)
    p = _command(audit, "show", "one audit record in full, as JSON", "audit show", parents=[common])
    p.add_argument("seq", type=int, help="the record's sequence number (SEQ in audit list)")
    p.set_defaults(func=cmd_audit_show)
    p = _command(
        audit, "verify", "verify the audit log's hash chain", "audit verify", parents=[common]
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of sentences")
    p.add_argument(
        "--anchor",
        type=_anchor,
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify, or aSEQ:HASH printed by `audit anchor`: "
        "fail if that record is gone or changed (default: none)",
    )
    p.set_defaults(func=cmd_audit_verify)
    p = _command(
        audit,
        "anchor",
        "commit every chain's head in the anchor chain",
        "audit anchor",
        parents=[common],
    )
    p.add_argument("--json", action="store_true", help="print the anchor record as JSON")
    p.set_defaults(func=cmd_audit_anchor)

    cycles = _group(sub, "cycles", "retraining cycles", "cycles_cmd")
    p = _command(cycles, "list", "list cycles, newest first", "cycles list", parents=[common])
    p.add_argument("--model", help="only this model's cycles (default: all)")
    p.add_argument("--active", action="store_true", help="only active cycles (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_cycles_list)
    p = _command(
        cycles,
        "show",
        "one cycle: gate table, rollout and audit trail",
        "cycles show",
        parents=[common],
    )
    p.add_argument("cycle", help="the cycle id (CYCLE in cycles list)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_cycles_show)

    policy = _group(sub, "policy", "policy files", "policy_cmd")
    p = _command(
        policy, "validate", "check a policy file before the service loads it", "policy validate"
    )
    p.add_argument("file", help="the policy YAML file")
    p.set_defaults(func=cmd_policy_validate)

    helps = {
        "approve": "approve a cycle awaiting approval",
        "deny": "deny a cycle awaiting approval",
        "retrain": "start a retraining cycle for a model now (coalesced if one is active)",
        "rollback": "instant rollback of a model to its last good deployment",
    }
    from autopilot.operator_commands import ROUTES

    for name, (target, _) in ROUTES.items():
        p = _command(sub, name, helps[name], name, parents=[common])
        what = "a model in the policy" if target == "model" else "CYCLE in cycles list"
        p.add_argument(target, help=f"the {target} ({what})")
        p.add_argument("--reason", required=True, help="why; kept in the audit log (required)")
        p.add_argument(
            "--as",
            dest="actor",
            metavar="NAME",
            help="who decides: in-process the audited actor (default: cli:$USER); over HTTP the "
            "function key's name is the actor and NAME is added to the reason",
        )
        if name in ("approve", "deny"):
            p.add_argument(
                "--policy",
                metavar="FILE",
                help=_POLICY_HELP + "; used only in-process, when no service runs",
            )
        p.add_argument("--url", help=_URL_HELP)
        p.add_argument("--key", help=_KEY_HELP)
        p.add_argument("--json", action="store_true", help="print the service's answer as JSON")
        p.set_defaults(func=cmd_operator)
    return parser


# What a terminal acts on (escape sequences, carriage return, bidi overrides, ...), except the
# line breaks and tabs our own output is made of.
_TERMINAL_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)


class _TerminalSafe:
    """A text stream for people: outside text printed through it (event subjects, alert
    names, reasons in tables and sentences) cannot clear the screen, set the title or
    overwrite a line. Each such character is written as ``\\uXXXX``, which inside a JSON
    string (``--json``) is the same character, so JSON output stays valid and equal."""

    def __init__(self, stream: typing.TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_TERMINAL_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        return len(text)

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    saved = sys.stdout, sys.stderr
    sys.stdout = typing.cast(typing.TextIO, _TerminalSafe(sys.stdout))
    sys.stderr = typing.cast(typing.TextIO, _TerminalSafe(sys.stderr))
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
    from autopilot.client import NoService
    from autopilot.operator_commands import RequestFailed
    from shared import log_escape

    log_escape.install()  # outside text in our log records cannot forge log lines
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, PolicyError, SettingsError, BadEvent, Conflict, NotFound, NoService) as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RequestFailed as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status < 500 else EXIT_CHECK_FAILED
    except AutopilotError as exc:
        print(f"autopilot: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
