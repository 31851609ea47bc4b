"""Hypothesis strategies for hostile and arbitrary intake payloads, shared by the fuzz tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests import payloads

AML_TYPES = [
    payloads.AML + t
    for t in (
        "ModelRegistered",
        "RunCompleted",
        "RunStatusChanged",
        "DatasetDriftDetected",
        "ModelDeployed",
    )
]

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=25,
)

events: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "id": st.text(max_size=10),
        "eventType": st.sampled_from([*AML_TYPES, "x"]),
        "subject": st.text(max_size=20),
        "data": json_values,
    },
    optional={"topic": json_values, "eventTime": json_values, "specversion": json_values},
)
