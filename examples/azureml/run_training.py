"""Run ``examples/model/train.py`` as an Azure ML command job and fill the job's named outputs.

train.py stays platform-neutral (the embedded platform runs it as it is). Inside an Azure ML
job three things need glue, which this wrapper adds without changing train.py:

- the job declares a ``model`` output (type ``mlflow_model``) that the autopilot registers as
  ``azureml://jobs/<job>/outputs/model/paths/`` (the output's root); train.py logs its model
  to the MLflow run only, so the wrapper copies the run's logged model (the folder holding
  ``MLmodel``) into that output;
- in a job, MLflow is already bound to the job's own run (``MLFLOW_RUN_ID``) and experiment;
  ``mlflow.set_experiment()`` with any other name makes ``mlflow.start_run()`` refuse to resume
  that run, so the wrapper passes the job's experiment name to train.py (``--experiment``);
- ``--champion-version none`` (the job's default) means there is no champion yet: train.py gets
  ``--no-champion`` instead of looking the champion up. The autopilot sets the input to the
  champion's version whenever the platform reports one.

Every other argument is passed through to train.py (``--window``, ``--algorithm``, ...).
It prints train.py's output as it comes and exits with train.py's exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("run_training")

NO_CHAMPION = frozenset({"", "none", "null"})
MODEL_ARTIFACT = "model"
DEFAULT_TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "model" / "train.py"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train-script", type=Path, default=DEFAULT_TRAIN_SCRIPT)
    parser.add_argument("--data-dir", required=True, help="folder of CSV batches (job input)")
    parser.add_argument("--model-name", required=True)
    parser.add_argument(
        "--champion-version", default="none", help="registered version to compare with, or none"
    )
    parser.add_argument(
        "--evaluation", type=Path, required=True, help="where evaluation.json goes (job output)"
    )
    parser.add_argument(
        "--model-output", type=Path, required=True, help="MLflow model folder (job output)"
    )
    return parser.parse_known_args(argv)


def train_command(
    args: argparse.Namespace, passthrough: list[str], experiment: str | None
) -> list[str]:
    """The train.py command line for these job arguments."""
    command = [
        sys.executable,
        str(args.train_script),
        "--data-dir",
        str(args.data_dir),
        "--model-name",
        str(args.model_name),
        "--outputs",
        str(args.evaluation),
    ]
    champion = str(args.champion_version).strip()
    if champion.lower() in NO_CHAMPION:
        command.append("--no-champion")
    else:
        command += ["--champion-version", champion]
    if experiment:
        command += ["--experiment", experiment]
    return command + passthrough


def job_experiment() -> str | None:
    """The experiment of the run MLflow is bound to in this job, if any."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return None
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    return str(client.get_experiment(experiment_id).name)


def run_id_from(output: str) -> str:
    """The run id in train.py's closing JSON summary line."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            summary = json.loads(line)
        except ValueError:
            continue
        if isinstance(summary, dict) and isinstance(summary.get("run_id"), str):
            return str(summary["run_id"])
    raise SystemExit("train.py printed no JSON summary with a run_id")


def run_train(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run train.py, echoing its stdout line by line; (exit code, stdout)."""
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    return process.returncode, "".join(lines)


def _download_model(run_id: str, workdir: Path) -> Path:
    """A local folder with the run's logged MLflow model (``MLmodel`` at its root)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        path = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=MODEL_ARTIFACT, dst_path=str(workdir / "run")
            )
        )
        if (path / "MLmodel").is_file():
            return path
    except (MlflowException, OSError) as exc:
        log.info("run %s has no %s/ artifact folder (%s)", run_id, MODEL_ARTIFACT, exc)
    # MLflow 3 logs `log_model(name=...)` as a LoggedModel linked to the run, not as run
    # artifacts: find it through the run's model outputs.
    run = mlflow.MlflowClient().get_run(run_id)
    outputs = getattr(run, "outputs", None)
    for output in getattr(outputs, "model_outputs", None) or []:
        model_id = getattr(output, "model_id", None)
        if not model_id:
            continue
        path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model_id}", dst_path=str(workdir / "logged")
            )
        )
        if (path / "MLmodel").is_file():
            return path
    raise SystemExit(f"run {run_id} logged no MLflow model named {MODEL_ARTIFACT!r}")


def export_model(run_id: str, destination: Path) -> None:
    """Copy the run's MLflow model into ``destination`` (the job's mlflow_model output)."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autopilot-model-") as tmp:
        source = _download_model(run_id, Path(tmp))
        for item in source.iterdir():
            target = destination / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    log.info("MLflow model of run %s copied to %s", run_id, destination)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args, passthrough = parse_args(argv)
    env = dict(os.environ)
    # In an Azure ML job the MLflow run id is the job name: tag the run as the autopilot's job.
    if env.get("MLFLOW_RUN_ID") and not env.get("AUTOPILOT_JOB_NAME"):
        env["AUTOPILOT_JOB_NAME"] = env["MLFLOW_RUN_ID"]
    command = train_command(args, passthrough, job_experiment())
    log.info("running %s", " ".join(command))
    code, output = run_train(command, env)
    if code != 0:
        log.error("train.py exited with %d", code)
        return code
    export_model(run_id_from(output), args.model_output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
