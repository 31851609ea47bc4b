"""Runs one job command and writes its exit code to a file when it ends.

``python -I -S job_launcher.py EXIT_FILE -- ARGV...``. The platform process that starts a
job may die (a crash, a restart) while the job runs on in its own session; the process that
adopts it afterwards is not its parent and cannot wait for it, so the exit code is left here
for it to read. Standard library only: it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys


def write_exit_code(path: str, code: int) -> None:
    """Write ``code`` atomically (a reader sees the whole number or no file)."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="ascii") as handle:
        handle.write(str(code))
    os.replace(partial, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: job_launcher.py EXIT_FILE -- ARGV...", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    try:
        proc = subprocess.Popen(command)  # same cwd, environment, stdio and process group
    except OSError as exc:
        print(f"could not start {command[0]}: {exc}", file=sys.stderr)
        write_exit_code(exit_file, 127)
        return 127
    code = proc.wait()
    write_exit_code(exit_file, code)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
