"""``autopilot cycles list|show``: the retraining cycles and a reviewer's view of one."""

from __future__ import annotations

import argparse
from typing import Any

from autopilot.commands.common import (
    AP,
    EXIT_OK,
    command,
    cycle_doc,
    data_dir_arg,
    group,
    open_audit,
    open_store,
    print_json,
    record_doc,
    short,
    table,
)
from shared.errors import NotFound

EXAMPLES = {
    "cycles list": f"""examples:
  {AP} cycles list
  {AP} cycles list --model credit-risk --active""",
    "cycles show": f"""examples:
  {AP} cycles show <CYCLE>""",
}


def cmd_cycles_list(args: argparse.Namespace) -> int:
    cycles = open_store(data_dir_arg(args)).list_cycles(args.model, args.active)
    if args.json:
        print_json([cycle_doc(c) for c in cycles])
        return EXIT_OK
    rows = [
        [
            c.id,
            c.model,
            c.state.value,
            c.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            c.candidate_version or "",
            str(c.coalesced),
            short(c.reason, 60),
        ]
        for c in cycles
    ]
    print(
        table(
            rows, ["CYCLE", "MODEL", "STATE", "STARTED (UTC)", "CANDIDATE", "COALESCED", "REASON"]
        )
    )
    return EXIT_OK


def describe_cycle(cycle: Any, records: list[Any]) -> str:
    """A reviewer's view of one cycle: state, gate table, rollout, audit trail."""
    from shared.rollout_state import traffic_text

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
        lines.append(table(rows, ["RULE", "METRIC", "OBSERVED", "THRESHOLD", "RESULT", "DETAIL"]))
    if cycle.rollout:
        ro = cycle.rollout
        lines.append(
            f"\nrollout on {ro.endpoint}: new {ro.deployment}, previous {ro.previous or '-'}"
        )
        for step in ro.steps:
            lines.append(f"  {step.at.isoformat()}  traffic {traffic_text(step.traffic)}")
        for check in ro.checks:
            lines.append(f"  {check.at.isoformat()}  health {check.verdict}: {check.why}")
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
    data_dir = data_dir_arg(args)
    cycle = open_store(data_dir).get_cycle(args.cycle)
    if cycle is None:
        raise NotFound(f"no cycle {args.cycle!r}")
    records = open_audit(data_dir).query(cycle=cycle.id)
    if args.json:
        print_json({"cycle": cycle_doc(cycle), "audit": [record_doc(r) for r in records]})
    else:
        print(describe_cycle(cycle, records))
    return EXIT_OK


def add_cycles_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cycles list`` and ``cycles show`` under ``sub``."""
    cycles = group(sub, "cycles", "retraining cycles", "cycles_cmd")
    p = command(
        cycles, "list", "list cycles, newest first", EXAMPLES["cycles list"], parents=[common]
    )
    p.add_argument("--model", help="only this model's cycles (default: all)")
    p.add_argument("--active", action="store_true", help="only active cycles (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_cycles_list)
    p = command(
        cycles,
        "show",
        "one cycle: gate table, rollout and audit trail",
        EXAMPLES["cycles show"],
        parents=[common],
    )
    p.add_argument("cycle", help="the cycle id (CYCLE in cycles list)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_cycles_show)
