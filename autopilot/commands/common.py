"""What every ``autopilot`` sub-command shares: exit codes, the data folder, output helpers
and the argparse pieces."""

from __future__ import annotations

import argparse
import os
import typing
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_POLICY = Path("examples/policy.yaml")


class UsageError(Exception):
    """Bad usage or input: exit code 2."""


def data_dir_arg(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("AUTOPILOT_DATA_DIR") or ".autopilot")


def policy_arg(args: argparse.Namespace) -> Path:
    raw = getattr(args, "policy", None) or os.environ.get("AUTOPILOT_POLICY")
    return Path(raw) if raw else DEFAULT_POLICY


def existing_db(data_dir: Path, name: str) -> Path:
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


def open_store(data_dir: Path) -> Any:
    from shared.adapters.sqlite_store import SqliteStateStore

    return SqliteStateStore(existing_db(data_dir, "state.db"))


def open_audit(data_dir: Path) -> Any:
    from shared.adapters.sqlite_audit import SqliteAuditLog

    return SqliteAuditLog(existing_db(data_dir, "audit.db"))


def print_json(data: Any) -> None:
    """Strict JSON; ``data`` may hold records written one by one (``record_doc``, ``cycle_doc``)."""
    from shared.json_out import document

    print(document(data, indent=2))


def record_doc(record: Any) -> Any:
    from shared.json_out import encode

    return encode(record.to_json, {"seq": record.seq}, indent=2)


def cycle_doc(cycle: Any) -> Any:
    from shared.json_out import encode

    return encode(cycle.to_json, {"id": cycle.id}, indent=2)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def short(text: str | None, limit: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


AP = ".venv/bin/autopilot"  # how the examples call the CLI: not on PATH after set-up
DATA_HELP = "state, audit and platform data (default: $AUTOPILOT_DATA_DIR, else ./.autopilot)"
POLICY_HELP = f"policy file (default: $AUTOPILOT_POLICY, else {DEFAULT_POLICY})"
URL_HELP = (
    "base URL of a running service (default: the service `autopilot serve` registered in the "
    "data dir's serve.json)"
)
KEY_HELP = (
    "function key for the service (default: $AUTOPILOT_KEY, else the first of "
    "$AUTOPILOT_FUNCTION_KEYS, else the data dir's function_keys.json)"
)


class Parser(argparse.ArgumentParser):
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


def positive_int(text: str) -> int:
    """A whole number of 1 or more (``--limit 0`` or ``-1`` would silently list nothing)."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return int(text)


def command(sub: Any, name: str, help_text: str, examples: str, **kw: Any) -> Any:
    """A sub-command whose --help ends with ``examples``."""
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )


def group(sub: Any, name: str, help_text: str, dest: str) -> Any:
    """A group of sub-commands (``audit``, ``cycles``...); returns where to add them."""
    parent = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    return parent.add_subparsers(dest=dest, required=True, metavar="COMMAND", parser_class=Parser)
