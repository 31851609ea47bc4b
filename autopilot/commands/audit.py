"""``autopilot audit list|show|verify``: read and check the audit log."""

from __future__ import annotations

import argparse
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

from autopilot.commands.common import (
    AP,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    UsageError,
    command,
    data_dir_arg,
    group,
    open_audit,
    positive_int,
    print_json,
    record_doc,
    short,
    table,
)
from shared.errors import NotFound

EXAMPLES = {
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
}


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
    records = open_audit(data_dir_arg(args)).query(
        model=args.model,
        cycle=args.cycle,
        kind=kind,
        since=since,
        limit=args.limit,
    )
    if args.json:
        print_json([record_doc(r) for r in records])
        return EXIT_OK
    rows = [
        [
            str(r.seq),
            r.time.strftime("%Y-%m-%d %H:%M:%S"),
            r.kind.value,
            r.actor,
            r.model or "",
            short(r.cycle, 24),
            short(r.summary, 50),
            short(r.reason, 60),
        ]
        for r in records
    ]
    print(
        table(rows, ["SEQ", "TIME (UTC)", "KIND", "ACTOR", "MODEL", "CYCLE", "SUMMARY", "REASON"])
    )
    return EXIT_OK


def cmd_audit_show(args: argparse.Namespace) -> int:
    record = open_audit(data_dir_arg(args)).get(args.seq)
    if record is None:
        raise NotFound(f"no audit record {args.seq}")
    print_json(record_doc(record))
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
    record = open_audit(data_dir_arg(args)).anchor()
    if args.json:
        print_json(record_doc(record))
        return EXIT_OK
    heads = ", ".join(f"chain {c} at {s}" for c, s, _ in record.evidence["heads"])
    print(f"anchor a{record.seq}:{record.hash} ({heads})")
    return EXIT_OK


def _check_anchor(log: Any, anchor: tuple[int, str, bool], records: int) -> tuple[int, str] | None:
    """(first bad seq, problem) when the anchored record is gone or changed; else None."""
    seq, digest, in_anchors = anchor
    anchored = log.get_anchor(seq) if in_anchors else log.get(seq)
    if anchored is None:
        cut = (
            "the anchor chain was cut back" if in_anchors else f"the log was cut back to {records}"
        )
        return seq, f"anchored record {seq} is gone: {cut}"
    if anchored.hash != digest:
        return seq, f"record {seq} no longer has the anchored hash: the log was rewritten"
    return None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The chain alone cannot show records cut off its end, or every hash recomputed after an
    edit; a head noted elsewhere earlier (``--anchor SEQ:HASH``) can. An empty log where the
    state store shows earlier activity was lost or emptied: that fails too."""
    from autopilot.state_files import AUDIT_DB, damage, earlier_activity

    if args.url:
        return _verify_by_service(args)
    data_dir = data_dir_arg(args)
    unreadable = damage(data_dir / AUDIT_DB)
    if unreadable:
        print(f"AUDIT LOG UNREADABLE: {data_dir / AUDIT_DB} {unreadable}")
        return EXIT_CHECK_FAILED
    log = open_audit(data_dir)
    result = log.verify()
    ok, first_bad, problem = result.ok, result.first_bad_seq, result.problem
    activity = earlier_activity(data_dir) if ok and result.records == 0 else None
    if activity:
        ok, problem = False, f"the audit log has no records although {activity}: it was lost"
    broken = _check_anchor(log, args.anchor, result.records) if ok and args.anchor else None
    if broken:
        ok, (first_bad, problem) = False, broken
    newest = log.query(limit=1)
    head = {"seq": newest[0].seq, "hash": newest[0].hash} if newest else None
    if args.json:
        print_json(
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


def _verify_by_service(args: argparse.Namespace) -> int:
    """``--url``: the running service verifies the log it writes (Table Storage on Azure,
    its data folder locally); the console's broken-chain banner suggests this command."""
    from autopilot.client import Target, call, check_url, function_key, shown_url
    from autopilot.operator_commands import RequestFailed, error_text

    if args.anchor:
        raise UsageError("--anchor checks the data folder's records: use it without --url")
    check_url(args.url)
    target = Target(args.url.rstrip("/"), function_key(data_dir_arg(args), args.key))
    status, body = call(target, "GET", "/api/audit/verify")
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise RequestFailed(status, f"audit verify refused: {error_text(status, body)}")
    where = f"by the service at {shown_url(target.url)}"
    if args.json:
        print_json(body)
    elif body["ok"]:
        print(f"audit chain intact: {body.get('records')} records verified {where}")
    else:
        chain = body.get("chain")
        in_chain = f" of chain {chain}" if chain not in (None, "0") else ""
        print(
            f"AUDIT CHAIN BROKEN at record {body.get('first_bad_seq')}{in_chain}: "
            f"{body.get('problem')} ({where})"
        )
    return EXIT_OK if body["ok"] else EXIT_CHECK_FAILED


def add_audit_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``audit list``, ``audit show``, ``audit verify`` and ``audit anchor`` under ``sub``."""
    audit = group(sub, "audit", "the audit log", "audit_cmd")
    p = command(
        audit,
        "list",
        "list audit records, oldest first",
        EXAMPLES["audit list"],
        parents=[common],
    )
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
        "--limit", type=positive_int, help="at most this many records, 1 or more (default: all)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_audit_list)
    p = command(
        audit,
        "show",
        "one audit record in full, as JSON",
        EXAMPLES["audit show"],
        parents=[common],
    )
    p.add_argument("seq", type=int, help="the record's sequence number (SEQ in audit list)")
    p.set_defaults(func=cmd_audit_show)
    p = command(
        audit,
        "verify",
        "verify the audit log's hash chain",
        EXAMPLES["audit verify"],
        parents=[common],
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of sentences")
    p.add_argument(
        "--anchor",
        type=_anchor,
        metavar="SEQ:HASH",
        help="a head printed by an earlier verify, or aSEQ:HASH printed by `audit anchor`: "
        "fail if that record is gone or changed (default: none)",
    )
    p.add_argument(
        "--url",
        help="ask the running service at this base URL to verify the log it writes (Table "
        "Storage on Azure) instead of reading the data dir (default: the data dir)",
    )
    p.add_argument(
        "--key",
        help="function key for --url (default: $AUTOPILOT_KEY, else the first of "
        "$AUTOPILOT_FUNCTION_KEYS, else the data dir's function_keys.json)",
    )
    p.set_defaults(func=cmd_audit_verify)
    p = command(
        audit,
        "anchor",
        "commit every chain's head in the anchor chain",
        EXAMPLES["audit anchor"],
        parents=[common],
    )
    p.add_argument("--json", action="store_true", help="print the anchor record as JSON")
    p.set_defaults(func=cmd_audit_anchor)
