"""What `func azure functionapp publish` ships: .funcignore against the app's needs and the guide.

Core Tools packages the app root minus what ``.funcignore`` matches (gitignore-style
patterns). The deployed app needs its Python code, the default policy and deployment
template, and the training job's whole ``code`` folder (azure-ai-ml uploads it from the
published app when the autopilot submits a job). docs/deploy.md lists what is kept out.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CACHES = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}  # "caches" in the guide


def patterns(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


FUNCIGNORE = patterns(ROOT / ".funcignore")


def excluded(relative: str) -> bool:
    """Whether a path (relative to the app root, '/'-separated) is left out of the package."""
    parts = relative.strip("/").split("/")
    for raw in FUNCIGNORE:
        pattern = raw.strip("/")
        if "/" in pattern:  # anchored at the root: the path or one of its parent folders
            depth = pattern.count("/") + 1
            if len(parts) >= depth and fnmatch.fnmatch("/".join(parts[:depth]), pattern):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def published_files(folder: Path) -> list[str]:
    return [
        str(p.relative_to(ROOT))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not excluded(str(p.relative_to(ROOT)))
    ]


def bicep_default(name: str) -> str:
    text = (ROOT / "infra" / "main.bicep").read_text()
    match = re.search(rf"^param {name} string = '([^']+)'", text, re.MULTILINE)
    assert match, name
    return match.group(1)


def test_the_matcher_reads_patterns_as_core_tools_does() -> None:
    assert excluded(".git/config") and excluded(".github/workflows/ci.yml")
    assert excluded("shared/__pycache__/x.pyc") and excluded("mlops_autopilot.egg-info/PKG-INFO")
    assert not excluded("shared/model.py") and not excluded("examples")


def test_the_code_the_functions_run_is_published() -> None:
    # A fresh interpreter, as the worker starts: this test session imports far more (tests,
    # benchmarks) than the function app does.
    probe = (
        "import json, sys, function_app, composition.wiring; "
        "print(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = [Path(f).resolve() for f in json.loads(out) if f]
    imported = {
        str(f.relative_to(ROOT))
        for f in files
        if f.is_relative_to(ROOT)
        and not f.is_relative_to(ROOT / ".venv")
        and not f.is_relative_to(ROOT / "tests")
    }
    assert {"function_app.py", "functions/azureml_events.py", "composition/wiring.py"} <= imported
    needed = imported | {"host.json", "requirements.txt", "functions/console_static"}
    assert sorted(p for p in needed if excluded(p)) == []


def test_the_default_policy_template_and_training_job_code_are_published() -> None:
    policy_path = bicep_default("policyPath")
    template = bicep_default("deploymentTemplatePath")
    assert not excluded(policy_path) and (ROOT / policy_path).is_file()
    assert not excluded(template) and (ROOT / template).is_file()
    policy = yaml.safe_load((ROOT / policy_path).read_text())
    job_files = {m["training"]["job_file"] for m in policy["models"].values()}
    assert job_files
    for job_file in job_files:
        assert not excluded(job_file)
        code = (ROOT / job_file).parent / yaml.safe_load((ROOT / job_file).read_text())["code"]
        everything = [
            str(p.relative_to(ROOT))
            for p in sorted(code.resolve().rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        ]
        assert "examples/model/train.py" in everything
        assert published_files(code.resolve()) == everything


def test_local_development_output_is_not_published() -> None:
    """Whatever git ignores (venv, local state, MLflow runs, caches) stays off Azure too."""
    ignored = [p.rstrip("/") for p in patterns(ROOT / ".gitignore")]
    assert sorted(p for p in ignored if not excluded(p)) == []
    for dev_only in ("tests", "docs", "scripts", "benchmarks", "infra", "requirements-dev.txt"):
        assert excluded(dev_only), dev_only


def test_the_deploy_guide_says_what_funcignore_does() -> None:
    guide = " ".join((ROOT / "docs" / "deploy.md").read_text().split())
    kept_out = guide[guide.index("`.funcignore` keeps out") : guide.index("Whatever is not")]
    listed = re.findall(r"`([^`]+)`", kept_out)[1:]  # [0] is `.funcignore` itself
    assert set(listed) | CACHES == set(FUNCIGNORE)
    published = guide[guide.index("Whatever is not excluded is published") :]
    published = published[: published.index("(the Bicep")]
    for path in re.findall(r"`([^`]+)`", published):
        assert not excluded(path), path
        assert (ROOT / path).exists(), path


def test_the_bicep_points_estimation_at_the_workspace_datastore_and_grants_read_on_it() -> None:
    """infra/main.bicep (text; no Bicep CLI here): AUTOPILOT_COLLECTOR_CONTAINER_URL, which the
    collector log and datastore ground truth read (composition/wiring.py), is the workspace
    storage account's blob container, and set only where the identity gets a blob role there."""
    text = (ROOT / "infra" / "main.bicep").read_text()
    settings = re.findall(r"^    (AUTOPILOT_[A-Z_]+): (.+)$", text, re.MULTILINE)
    value = dict(settings)["AUTOPILOT_COLLECTOR_CONTAINER_URL"]
    assert value == "collectorContainerUrl"
    [definition] = re.findall(r"^var collectorContainerUrl = (.+)$", text, re.MULTILINE)
    condition, url = definition.split(" ? ", 1)
    assert condition == "grantWorkspaceStorage && !empty(workspaceBlobContainer)"
    assert url.startswith("'https://${last(workspaceStorageParts)}.blob.")
    assert url.endswith("/${workspaceBlobContainer}' : ''")
    assert "param workspaceBlobContainer string = ''" in text
    role = text[text.index("module workspaceStorageRole") :]
    role = role[: role.index("\n}\n")]
    assert "if (grantWorkspaceStorage)" in role
    assert "storageAccountName: last(workspaceStorageParts)" in role
    assert "roleIds.storageBlobDataReader" in role and "roleIds.storageBlobDataContributor" in role
    roles = (ROOT / "infra" / "modules" / "roles.bicep").read_text()
    # the built-in role ids (Azure RBAC reference: Storage Blob Data Reader / Contributor)
    assert "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1" in roles
    assert "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in roles


def test_the_example_parameters_are_all_parameters_of_the_bicep() -> None:
    text = (ROOT / "infra" / "main.bicep").read_text()
    declared = set(re.findall(r"^param (\w+) ", text, re.MULTILINE))
    example = json.loads((ROOT / "infra" / "main.parameters.example.json").read_text())
    assert set(example["parameters"]) <= declared
    assert "workspaceBlobContainer" in example["parameters"]
