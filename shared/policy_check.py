"""What a valid policy still needs from this machine (``autopilot policy validate``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from shared.policy import parse_policy
from shared.policy_source import line_of, read_yaml

SCRIPT_SUFFIXES = (".py", ".R", ".sh", ".ipynb")


def environment_problems(path: Path, env: Mapping[str, str], code_dir: Path) -> list[str]:
    """What a valid policy still needs from this machine: the local training scripts its
    commands name (relative to ``code_dir``, where jobs resolve them) and the Log Analytics
    workspace a ``confirm.query`` runs on. One ``file:line: model: field: problem`` each."""
    data = read_yaml(path)
    policy = parse_policy(data, str(path))
    problems = []
    for name, spec in policy.models.items():
        for index, item in enumerate(spec.training.command):
            if "{" in item or item.startswith("-") or not item.endswith(SCRIPT_SUFFIXES):
                continue
            script = Path(item) if Path(item).is_absolute() else code_dir / item
            if not script.is_file():
                line = line_of(data, ("models", name, "training", "command"))
                problems.append(
                    f"{path}:{line}: model {name!r}: field 'training.command[{index}]': "
                    f"training script {item!r} does not exist (relative paths are resolved "
                    f"from {code_dir}, where autopilot runs)"
                )
        if spec.confirm.query and not env.get("AUTOPILOT_LOG_WORKSPACE_ID"):
            line = line_of(data, ("models", name, "confirm", "query"))
            problems.append(
                f"{path}:{line}: model {name!r}: field 'confirm.query': needs a Log Analytics "
                "workspace: set AUTOPILOT_LOG_WORKSPACE_ID (the service refuses to start "
                "without it)"
            )
    return problems
