"""``autopilot policy validate``: check a policy file before the service loads it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from autopilot.commands.common import AP, EXIT_OK, command, group
from shared.errors import PolicyError

EXAMPLES = {
    "policy validate": f"""examples:
  {AP} policy validate examples/policy.yaml""",
}


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


def add_policy_commands(sub: Any) -> None:
    """``policy validate`` under ``sub``."""
    policy = group(sub, "policy", "policy files", "policy_cmd")
    p = command(
        policy,
        "validate",
        "check a policy file before the service loads it",
        EXAMPLES["policy validate"],
    )
    p.add_argument("file", help="the policy YAML file")
    p.set_defaults(func=cmd_policy_validate)
