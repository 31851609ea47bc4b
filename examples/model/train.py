"""Train the credit-risk classifier on the most recent data and evaluate it against the champion.

Runs unchanged as a local job of the embedded platform or as an Azure ML command job: plain
arguments and environment variables, MLflow for tracking (``MLFLOW_TRACKING_URI``), nothing
from the embedded platform.

- reads ``batch-*.csv`` (or any ``*.csv``) in ``--data-dir`` in name order, keeps the last
  ``--window`` rows, holds out a seeded ``--holdout`` share of them;
- trains a scikit-learn pipeline on the rest; logs params, metrics and the model to MLflow,
  tagging the run ``autopilot_job=$AUTOPILOT_JOB_NAME`` when that is set;
- scores the challenger and the registry's champion (``models:/<name>@champion``, or
  ``--champion-version``) on the SAME held-out rows and writes ``evaluation.json``
  (schema ``autopilot.evaluation/v1``) to ``--outputs`` / ``$AUTOPILOT_OUTPUT_DIR``.

``--quality worse`` trains on a tiny sample with noisy labels, for demos of a rejected model.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("train")

SCHEMA = "autopilot.evaluation/v1"
NUMERIC = ("income", "debt_ratio", "age", "utilization", "late_payments", "tenure_years")
CATEGORICAL = ("region", "channel")
LABEL = "label"
SEGMENT = "region"
JOB_TAG = "autopilot_job"
TRUSTED_TYPES = {"gbm": ("sklearn.tree._tree.Tree",)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env.get("AUTOPILOT_INPUT_DATA_DIR"),
        help="folder of CSV batches (default $AUTOPILOT_INPUT_DATA_DIR)",
    )
    parser.add_argument(
        "--model-name", default=env.get("AUTOPILOT_INPUT_MODEL_NAME", "credit-risk")
    )
    parser.add_argument(
        "--outputs",
        type=Path,
        default=Path(env.get("AUTOPILOT_OUTPUT_DIR", "outputs")),
        help="where evaluation.json goes (default $AUTOPILOT_OUTPUT_DIR or ./outputs)",
    )
    parser.add_argument("--experiment", default=env.get("AUTOPILOT_EXPERIMENT"))
    parser.add_argument("--window", type=int, default=4000, help="most recent rows to use")
    parser.add_argument("--holdout", type=float, default=0.3, help="share held out for evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithm", choices=("gbm", "logreg"), default="gbm")
    parser.add_argument(
        "--quality",
        choices=("normal", "worse"),
        default="normal",
        help="'worse': tiny sample with noisy labels (a challenger that should be rejected)",
    )
    parser.add_argument(
        "--champion-version",
        default=env.get("AUTOPILOT_INPUT_CHAMPION_VERSION") or None,
        help="compare with this registered version (default: the registry alias 'champion')",
    )
    parser.add_argument("--no-champion", action="store_true", help="do not compare")
    parser.add_argument(
        "--serve-probabilities",
        action="store_true",
        help="the served model answers [p0, p1] per row instead of a class label (what "
        "label-free performance estimation reads from the scored-input log)",
    )
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("--data-dir is required (or set AUTOPILOT_INPUT_DATA_DIR)")
    if not 0.05 <= args.holdout <= 0.9:
        parser.error("--holdout must be between 0.05 and 0.9")
    return args


def load_recent(data_dir: Path, window: int) -> dict[str, list[str]]:
    """The last ``window`` rows of the CSV files in ``data_dir`` (name order), as columns."""
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise SystemExit(
            f"no CSV files in {data_dir} (the policy's training.inputs.data_dir). Create the "
            "example data from the repository root with: .venv/bin/python "
            f"examples/model/generate_data.py --out-dir {data_dir} --rows 3000 --seed 1"
        )
    rows: list[dict[str, str]] = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    rows = rows[-window:]
    missing = {*NUMERIC, *CATEGORICAL, LABEL} - set(rows[0])
    if missing:
        raise SystemExit(f"data is missing columns {sorted(missing)}")
    return {name: [row[name] for row in rows] for name in (*NUMERIC, *CATEGORICAL, LABEL)}


def frame(columns: dict[str, list[str]], index: np.ndarray[Any, Any]) -> Any:
    import pandas as pd

    data: dict[str, Any] = {name: np.asarray(columns[name], dtype=float)[index] for name in NUMERIC}
    data.update({name: np.asarray(columns[name], dtype=object)[index] for name in CATEGORICAL})
    return pd.DataFrame(data)


def build_pipeline(algorithm: str, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(NUMERIC)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    if algorithm == "logreg":
        model: Any = LogisticRegression(max_iter=1000)
    else:
        model = GradientBoostingClassifier(
            n_estimators=100, learning_rate=0.1, max_depth=3, random_state=seed
        )
    return Pipeline([("features", features), ("model", model)])


def metrics(labels: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        log_loss,
        roc_auc_score,
    )

    clipped = np.clip(scores, 1e-6, 1 - 1e-6)
    return {
        "auc": round(float(roc_auc_score(labels, scores)), 6),
        "accuracy": round(float(accuracy_score(labels, scores >= 0.5)), 6),
        "log_loss": round(float(log_loss(labels, clipped, labels=[0, 1])), 6),
    }


def positive_scores(model: Any, x: Any) -> np.ndarray[Any, Any]:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x))[:, 1].astype(float)
    predicted = np.asarray(model.predict(x), dtype=float)  # pyfunc: labels or [p0, p1] rows
    return predicted[:, 1] if predicted.ndim == 2 else predicted.reshape(-1)


def load_champion(name: str, version: str | None) -> tuple[str, Any] | None:
    """(version, model) of the champion, or None when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    if version is None:
        try:
            version = str(client.get_model_version_by_alias(name, "champion").version)
        except MlflowException as exc:
            # only "no such model / alias" means there is no champion; any other error must
            # fail the job, or the gate would judge the challenger as a first model
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            log.info("no champion for %s (%s)", name, exc.error_code)
            return None
    uri = f"models:/{name}/{version}"
    try:
        return version, mlflow.sklearn.load_model(uri)
    except MlflowException:
        log.info("champion %s has no sklearn flavour; using pyfunc", uri)
        return version, mlflow.pyfunc.load_model(uri)


def log_model_options(log_model: Any, algorithm: str) -> dict[str, Any]:
    """Keyword arguments that differ between MLflow 2 (Azure ML images) and MLflow 3."""
    import inspect

    accepted = inspect.signature(log_model).parameters
    options: dict[str, Any] = (
        {"name": "model"} if "name" in accepted else {"artifact_path": "model"}
    )
    if "skops_trusted_types" in accepted:
        # the tree arrays of the model this script just fitted (skops asks to name them)
        options["skops_trusted_types"] = list(TRUSTED_TYPES.get(algorithm, ()))
    return options


@dataclass(frozen=True)
class Split:
    """The training rows and the held-out rows the evaluation scores."""

    x_train: Any
    x_test: Any
    y_train: Any
    y_test: Any
    rows: int  # rows read, before the split


def split_holdout(columns: dict[str, Any], args: argparse.Namespace) -> Split:
    """A seeded hold-out split; ``--quality worse`` trains on a tiny sample with noisy labels."""
    count = len(columns[LABEL])
    labels_all = np.asarray(columns[LABEL], dtype=float).astype(int)
    order = np.random.default_rng(args.seed).permutation(count)
    n_holdout = max(1, round(count * args.holdout))
    test_idx, train_idx = np.sort(order[:n_holdout]), np.sort(order[n_holdout:])
    if args.quality == "worse":
        train_idx = np.sort(np.random.default_rng(args.seed + 1).permutation(train_idx)[:60])
    x_train, x_test = frame(columns, train_idx), frame(columns, test_idx)
    y_train, y_test = labels_all[train_idx].copy(), labels_all[test_idx]
    if args.quality == "worse":
        flip = np.random.default_rng(args.seed + 2).random(len(y_train)) < 0.35
        y_train[flip] = 1 - y_train[flip]
    if len(set(y_train.tolist())) < 2 or len(set(y_test.tolist())) < 2:
        raise SystemExit("training and held-out data both need both classes")

    return Split(x_train, x_test, y_train, y_test, count)


def evaluation_document(
    model_name: str,
    run_id: str,
    x_test: Any,
    y_test: Any,
    challenger_scores: Any,
    challenger_metrics: dict[str, float],
    champion: tuple[str, Any] | None,
) -> dict[str, Any]:
    """``evaluation.json``: both models' metrics and the per-example scores the gate reads."""
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "model": model_name,
        "n": len(y_test),
        "task": "binary_classification",
        "champion": None,
        "challenger": {"metrics": challenger_metrics, "run_id": run_id},
        "examples": {
            "label": y_test.tolist(),
            "challenger_score": np.round(challenger_scores, 6).tolist(),
            "segments": {SEGMENT: x_test[SEGMENT].astype(str).tolist()},
        },
    }
    if champion is not None:
        version, champion_model = champion
        champion_scores = positive_scores(champion_model, x_test)
        document["champion"] = {"version": version, "metrics": metrics(y_test, champion_scores)}
        document["examples"]["champion_score"] = np.round(champion_scores, 6).tolist()
    return document


def run_params(
    args: argparse.Namespace, split: Split, champion: tuple[str, Any] | None
) -> dict[str, Any]:
    """The run's parameters as MLflow records them."""
    return {
        "algorithm": args.algorithm,
        "window": args.window,
        "rows_used": split.rows,
        "train_rows": len(split.y_train),
        "holdout_rows": len(split.y_test),
        "seed": args.seed,
        "quality": args.quality,
        "champion_version": champion[0] if champion else "none",
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    columns = load_recent(args.data_dir, args.window)
    split = split_holdout(columns, args)
    x_train, x_test, y_train, y_test = split.x_train, split.x_test, split.y_train, split.y_test
    champion = None if args.no_champion else load_champion(args.model_name, args.champion_version)

    job = os.environ.get("AUTOPILOT_JOB_NAME")
    mlflow.set_experiment(args.experiment or args.model_name)
    tags = {"model": args.model_name, "quality": args.quality}
    if job:
        tags[JOB_TAG] = job
    with mlflow.start_run(tags=tags) as run:
        pipeline = build_pipeline(args.algorithm, args.seed).fit(x_train, y_train)
        challenger_scores = positive_scores(pipeline, x_test)
        challenger_metrics = metrics(y_test, challenger_scores)
        document = evaluation_document(
            args.model_name,
            run.info.run_id,
            x_test,
            y_test,
            challenger_scores,
            challenger_metrics,
            champion,
        )
        if document["champion"] is not None:
            mlflow.log_metrics(
                {f"champion_{k}": v for k, v in document["champion"]["metrics"].items()}
            )
        mlflow.log_params(run_params(args, split, champion))
        mlflow.log_metrics(challenger_metrics)
        serve = "predict_proba" if args.serve_probabilities else "predict"
        mlflow.sklearn.log_model(
            pipeline,
            signature=infer_signature(x_test.head(20), getattr(pipeline, serve)(x_test.head(20))),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            pyfunc_predict_fn=serve,
            **log_model_options(mlflow.sklearn.log_model, args.algorithm),
        )
        args.outputs.mkdir(parents=True, exist_ok=True)
        path = args.outputs / "evaluation.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        mlflow.log_artifact(str(path))
    summary = {"challenger": challenger_metrics, "champion": document["champion"]}
    print(json.dumps({"run_id": run.info.run_id, "job": job, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
