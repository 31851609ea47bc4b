"""Deterministic synthetic credit-risk data: 6 numeric and 2 categorical features, binary label.

``--shift`` switches on a covariate shift (utilisation up, income down, a different region and
channel mix) AND a concept change (how features relate to default changes), so a model
retrained on recent data is measurably better on recent data than one trained before.

    python examples/model/generate_data.py --out-dir .autopilot/data --rows 3000 --seed 1
    python examples/model/generate_data.py --out-dir .autopilot/data --rows 3000 --seed 2 --shift

Each call writes the next ``batch-NNNN.csv`` in ``--out-dir`` (or ``--name``); training reads
the batches in name order and uses the most recent rows.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC = ("income", "debt_ratio", "age", "utilization", "late_payments", "tenure_years")
CATEGORICAL = ("region", "channel")
FEATURES = NUMERIC + CATEGORICAL
LABEL = "label"
REGIONS = ("north", "south", "east", "west")
CHANNELS = ("branch", "online", "partner")

Columns = dict[str, np.ndarray[Any, Any]]


def generate(rows: int, seed: int, *, shift: bool = False, silent: bool = False) -> Columns:
    """Feature columns and the label for ``rows`` applicants, the same for the same seed.

    ``silent``: every feature keeps its distribution (no data drift), but the risk factors are
    re-paired to cancel (high debt with few late payments, high utilisation with high income),
    so the model's scores bunch up where it cannot separate the classes, and the concept
    changes as with ``shift`` (what makes retraining worthwhile; no score-based estimate can
    see that part).
    """
    rng = np.random.default_rng(seed)
    features = _features(rng, rows, shift=shift, silent=silent)
    logit = _logit(features, changed=shift or silent)
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return {
        "income": np.round(features["income"], 3),
        "debt_ratio": np.round(features["debt_ratio"], 4),
        "age": np.round(features["age"], 1),
        "utilization": np.round(features["utilization"], 4),
        "late_payments": features["late_payments"],
        "tenure_years": np.round(features["tenure_years"], 2),
        "region": features["region"],
        "channel": features["channel"],
        LABEL: label,
    }


def _features(rng: np.random.Generator, rows: int, *, shift: bool, silent: bool) -> Columns:
    """The applicants' features, before rounding."""
    if shift:
        income = rng.lognormal(np.log(38.0), 0.5, rows)
        utilization = rng.beta(4.0, 3.0, rows)
        region = rng.choice(REGIONS, rows, p=[0.15, 0.40, 0.15, 0.30])
        channel = rng.choice(CHANNELS, rows, p=[0.20, 0.60, 0.20])
    else:
        income = rng.lognormal(np.log(50.0), 0.45, rows)
        utilization = rng.beta(2.0, 3.0, rows)
        region = rng.choice(REGIONS, rows, p=[0.30, 0.25, 0.25, 0.20])
        channel = rng.choice(CHANNELS, rows, p=[0.50, 0.30, 0.20])
    debt_ratio = rng.beta(2.0, 4.0, rows)
    age = np.clip(rng.normal(42.0, 12.0, rows), 18.0, 85.0)
    late_payments = rng.poisson(0.6, rows).astype(float)
    tenure_years = rng.gamma(2.0, 2.5, rows)
    if silent and not shift:
        order = np.argsort(debt_ratio)
        debt_ratio, age, tenure_years = debt_ratio[order], age[order], tenure_years[order]
        region, channel = region[order], channel[order]
        late_payments = np.sort(late_payments)[::-1]
        utilization = np.sort(utilization)[::-1]
        income = np.sort(income)[::-1]
    return {
        "income": income,
        "debt_ratio": debt_ratio,
        "age": age,
        "utilization": utilization,
        "late_payments": late_payments,
        "tenure_years": tenure_years,
        "region": region,
        "channel": channel,
    }


def _logit(features: Columns, *, changed: bool) -> np.ndarray[Any, Any]:
    """The log-odds of default; ``changed``: the concept after the shift."""
    income, debt_ratio, age = features["income"], features["debt_ratio"], features["age"]
    late_payments, tenure_years = features["late_payments"], features["tenure_years"]
    utilization, region, channel = features["utilization"], features["region"], features["channel"]
    region_effect = {"north": 0.0, "south": 0.3, "east": -0.2, "west": 0.1}
    channel_effect = {"branch": -0.3, "online": 0.3, "partner": 0.0}
    if changed:  # the concept changes too: new fraud pattern online, east, utilisation
        region_effect = {"north": 0.0, "south": -0.4, "east": 1.0, "west": 0.2}
        channel_effect = {"branch": 0.4, "online": -0.9, "partner": 0.6}
    logit = (
        -0.9
        + 3.0 * (debt_ratio - 0.33)
        + 0.6 * late_payments
        - 0.02 * (age - 42.0)
        - 0.6 * np.log(income / 50.0)
        - 0.05 * tenure_years
        + np.array([region_effect[r] for r in region])
        + np.array([channel_effect[c] for c in channel])
    )
    if changed:
        logit += 3.5 * np.maximum(utilization - 0.6, 0.0) * 4.0 - 1.5 * (utilization < 0.35)
        logit -= 0.4 * late_payments
    else:
        logit += 1.5 * (utilization - 0.4)
    out: np.ndarray[Any, Any] = logit
    return out


def to_rows(columns: Columns, *, with_label: bool = False) -> list[dict[str, Any]]:
    """Row dicts of plain Python values (e.g. for scoring requests)."""
    names = [*FEATURES, LABEL] if with_label else list(FEATURES)
    count = len(columns[names[0]])
    return [{name: columns[name][i].item() for name in names} for i in range(count)]


def write_csv(path: Path, columns: Columns) -> None:
    names = [*FEATURES, LABEL]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows(zip(*(columns[name].tolist() for name in names), strict=True))


def next_batch_name(out_dir: Path) -> str:
    numbers = [
        int(m.group(1))
        for p in out_dir.glob("batch-*.csv")
        if (m := re.fullmatch(r"batch-(\d+)\.csv", p.name))
    ]
    return f"batch-{max(numbers, default=0) + 1:04d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write one batch of synthetic credit-risk data.")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shift", action="store_true", help="covariate shift + concept change")
    parser.add_argument(
        "--silent",
        action="store_true",
        help="same per-feature distributions, risk factors re-paired to cancel, concept change",
    )
    parser.add_argument("--name", help="file name without .csv (default: the next batch-NNNN)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    name = args.name or next_batch_name(args.out_dir)
    path = args.out_dir / f"{name}.csv"
    if args.shift and args.silent:
        parser.error("--shift and --silent are different scenarios; give one")
    write_csv(path, generate(args.rows, args.seed, shift=args.shift, silent=args.silent))
    kind = " (shifted)" if args.shift else " (silent shift)" if args.silent else ""
    print(f"wrote {args.rows} rows{kind} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
