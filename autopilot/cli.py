"""The ``autopilot`` command line: serve, replay, audit, cycles, policy, approve/deny.

Exit codes: 0 ok, 1 a check failed (e.g. ``audit verify`` found tampering), 2 bad usage or input.
The ``audit``, ``cycles`` and ``policy`` groups live in ``autopilot.commands``; this module holds
the service and operator commands, builds the parser and runs it.
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopilot.commands import audit, cycles, policy
from autopilot.commands.common import (
    AP,
    DATA_HELP,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    KEY_HELP,
    POLICY_HELP,
    URL_HELP,
    Parser,
    UsageError,
    command,
    data_dir_arg,
    policy_arg,
    print_json,
)
from autopilot.commands.cycles import describe_cycle
from shared.errors import (
    AutopilotError,
    BadEvent,
    Conflict,
    NotFound,
    PolicyError,
    SettingsError,
)

__all__ = ["EXAMPLES", "build_parser", "describe_cycle", "main"]


def cmd_operator(args: argparse.Namespace) -> int:
    """approve / deny / retrain / rollback: a sentence saying what happened (--json: the answer)."""
    from autopilot.operator_commands import ROUTES, operator

    target_kind, _ = ROUTES[args.command]
    text, body = operator(
        args.command,
        getattr(args, target_kind),
        reason=args.reason,
        actor=args.actor,
        data_dir=data_dir_arg(args),
        policy=policy_arg(args),
        url=args.url,
        key=args.key,
    )
    if args.json:
        print_json(body)
    else:
        print(text)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from autopilot.serve import serve

    return serve(
        host=args.host, port=args.port, policy=policy_arg(args), data_dir=data_dir_arg(args)
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

    lines, body = replay(Path(args.file), data_dir=data_dir_arg(args), url=args.url, key=args.key)
    if args.json:
        print_json(body)
    else:
        print("\n".join(lines))
    return EXIT_OK


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
    **audit.EXAMPLES,
    **cycles.EXAMPLES,
    **policy.EXAMPLES,
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", help=DATA_HELP)
    parser = Parser(
        prog="autopilot",
        description="Event-driven MLOps automation for Azure Machine Learning.",
        epilog=f"Start with: {AP} demo   or   {AP} serve --policy examples/policy.yaml\n"
        "Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    _add_serve(sub, common)
    _add_demo(sub, common)
    _add_replay(sub, common)
    audit.add_audit_commands(sub, common)
    cycles.add_cycles_commands(sub, common)
    policy.add_policy_commands(sub)
    _add_operator_commands(sub, common)
    return parser


def _add_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(
        sub, "serve", "serve the function app over HTTP", EXAMPLES["serve"], parents=[common]
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7071, help="port to bind (default: 7071)")
    p.add_argument("--policy", metavar="FILE", help=POLICY_HELP)
    p.set_defaults(func=cmd_serve)


def _add_demo(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(
        sub,
        "demo",
        "the closed loop on the embedded default, live",
        EXAMPLES["demo"],
        parents=[common],
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


def _add_replay(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(
        sub,
        "replay",
        "deliver a stored Event Grid / CloudEvents / alert payload to the running service",
        EXAMPLES["replay"],
        parents=[common],
    )
    p.add_argument("file", help="a JSON file: an Event Grid or CloudEvents array, or an alert")
    p.add_argument("--url", help=URL_HELP)
    p.add_argument("--key", help=KEY_HELP)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=cmd_replay)


def _add_operator_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    helps = {
        "approve": "approve a cycle awaiting approval",
        "deny": "deny a cycle awaiting approval",
        "retrain": "start a retraining cycle for a model now (coalesced if one is active)",
        "rollback": "instant rollback of a model to its last good deployment",
    }
    from autopilot.operator_commands import ROUTES

    for name, (target, _) in ROUTES.items():
        p = command(sub, name, helps[name], EXAMPLES[name], parents=[common])
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
                help=POLICY_HELP + "; used only in-process, when no service runs",
            )
        p.add_argument("--url", help=URL_HELP)
        p.add_argument("--key", help=KEY_HELP)
        p.add_argument("--json", action="store_true", help="print the service's answer as JSON")
        p.set_defaults(func=cmd_operator)


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
    string (``--json``) is the same character, so JSON output stays valid and equal. On
    stderr, any configured secret or credential part is masked first, as in a log line (an
    error that echoes an argument: a file name that is a SAS URL). stdout is the service's
    data, scrubbed where it was stored; masking its JSON text again could break it."""

    def __init__(self, stream: typing.TextIO, *, scrub: bool = False) -> None:
        self._stream = stream
        self._scrub = scrub

    def write(self, text: str) -> int:
        from shared import log_scrub

        safe = log_scrub.current().text(text) if self._scrub else text
        self._stream.write(_TERMINAL_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", safe))
        return len(text)

    def __getattr__(self, name: str) -> typing.Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    saved = sys.stdout, sys.stderr
    sys.stdout = typing.cast(typing.TextIO, _TerminalSafe(sys.stdout))
    sys.stderr = typing.cast(typing.TextIO, _TerminalSafe(sys.stderr, scrub=True))
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
    from autopilot.client import NoService
    from autopilot.operator_commands import RequestFailed
    from shared import log_scrub

    log_scrub.install()  # no log line holds a secret; outside text cannot forge one (log_escape)
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
