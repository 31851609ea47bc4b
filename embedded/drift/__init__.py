"""The local data-drift monitor: production inputs of an endpoint against the training baseline.

Statistics per feature (the names Azure ML model monitoring uses):

- numeric: ``normalized_wasserstein`` (Wasserstein-1 distance between the baseline and the
  window, divided by the baseline's standard deviation, so 0.1 means "moved by a tenth of a
  standard deviation"; a constant baseline divides by 1), ``jensen_shannon`` (distance, base
  2, over the baseline's decile bins) and ``psi`` (population stability index over the same
  bins, proportions floored at 1e-4);
- categorical: ``jensen_shannon`` and ``psi`` over category proportions (categories of both
  sides; PSI floored as above) and ``chi2_pvalue`` (Pearson's chi-square test of homogeneity
  of the baseline and window counts; drift when the p-value is *below* the threshold).

The baseline is summarised once into a small JSON sketch (numeric: decile bin edges and
counts, up to 1,000 evenly spaced order statistics, mean and std; categorical: counts), so a
check never rescans the training data. A check reads the endpoint's logged inputs for a
window, computes every statistic vectorised with numpy/scipy and, on a breach, POSTs an Azure
Monitor common-alert-schema alert (log search V2 shape) to the service; ``Resolved`` follows
when a later window is clean. Default thresholds follow Azure ML: normalised Wasserstein 0.1
for numeric features, Jensen-Shannon 0.1 for categorical ones; other statistics are reported
and only breach when a threshold is given for them.

Sampling noise shrinks like 1/sqrt(n): with unchanged data, the normalised Wasserstein distance
of a 300-row window is about 0.07 on average (and exceeds 0.1 in some windows), of a 2,000-row
window about 0.03. Hence ``min_samples`` defaults to 1,000 rows: a smaller window gives no
verdict rather than a false alarm.

Data wider or longer than memory is summarised and compared from row chunks (``stream``,
with ``quantiles`` summaries) read from Parquet, CSV or data collector JSONL (``readers``).

Modules: ``sketch`` (the baseline), ``statistics`` (the report), ``alerts`` (the payloads),
``monitor`` (the stateful check loop), ``stream``/``quantiles``/``readers`` (chunked input),
``cli`` (``python -m embedded.drift``).
"""

from embedded.drift.alerts import alert_payload, alert_rule_id, iso_duration
from embedded.drift.monitor import DriftCheck, DriftMonitor
from embedded.drift.sketch import (
    BaselineSketch,
    CategoricalSketch,
    FeatureSketch,
    NumericSketch,
    read_csv_columns,
    rows_to_columns,
    summarize,
    summarize_categorical,
    summarize_numeric,
)
from embedded.drift.statistics import (
    DriftReport,
    FeatureDrift,
    Thresholds,
    categorical_statistics,
    compare,
    jensen_shannon,
    numeric_statistics,
    psi,
)
from embedded.drift.stream import compare_stream, summarize_stream

__all__ = [
    "BaselineSketch",
    "CategoricalSketch",
    "DriftCheck",
    "DriftMonitor",
    "DriftReport",
    "FeatureDrift",
    "FeatureSketch",
    "NumericSketch",
    "Thresholds",
    "alert_payload",
    "alert_rule_id",
    "categorical_statistics",
    "compare",
    "compare_stream",
    "iso_duration",
    "jensen_shannon",
    "numeric_statistics",
    "psi",
    "read_csv_columns",
    "rows_to_columns",
    "summarize",
    "summarize_categorical",
    "summarize_numeric",
    "summarize_stream",
]
