"""Policy validation: precise messages naming file, model and field; the example is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import PolicyError
from shared.policy import Binding, load_policy, parse_duration, parse_policy
from tests.fakes import POLICY

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_is_valid() -> None:
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    assert policy.models


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"gate": {}}, "model 'credit': field 'gate.primary_metric': Field required"),
        ({"rollout": {"endpoint": "ep", "steps": [50, 10, 100]}}, "steps must strictly increase"),
        ({"rollout": {"endpoint": "ep", "steps": [10, 50]}}, "last step must be 100"),
        ({"cooldown": "soon"}, "field 'cooldown'"),
        ({"training": {"experiment": "x"}}, "give 'command'"),
        (
            {"gate": {"primary_metric": "auc", "floors": [{"metric": "auc"}]}},
            "needs 'min' or 'max'",
        ),
        ({"unknown_field": 1}, "field 'unknown_field': Extra inputs are not permitted"),
    ],
)
def test_invalid_policies_name_model_and_field(patch: dict[str, Any], message: str) -> None:
    data = {"models": {"credit": {**POLICY["models"]["credit"], **patch}}}
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "policy.yaml")
    assert "policy.yaml" in str(info.value)
    assert message in str(info.value)


def test_a_signal_bound_to_two_models_is_refused() -> None:
    credit = POLICY["models"]["credit"]
    data = {"models": {"credit": credit, "fraud": credit}}
    with pytest.raises(PolicyError, match="bound to both 'credit' and 'fraud'"):
        parse_policy(data, "p.yaml")


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(30, 30.0), ("90s", 90.0), ("5m", 300.0), ("6h", 21600.0), ("1d", 86400.0), ("250ms", 0.25)],
)
def test_durations(raw: Any, seconds: float) -> None:
    assert parse_duration(raw) == seconds


def two_models(first: dict[str, Any], second: dict[str, Any]) -> Any:
    """The test policy's model twice, as ``a`` then ``b``, with the given signal bindings."""
    import copy

    base = POLICY["models"]["credit"]
    models = {}
    for name, signals in (("a", first), ("b", second)):
        spec = copy.deepcopy(base)
        spec["signals"] = signals
        models[name] = spec
    return parse_policy({"models": models}, "bindings")


def test_monitor_names_bind_as_substrings_first_model_in_the_file_wins() -> None:
    policy = two_models(
        {"monitors": [{"name": "credit-monitor", "signals": ["psi"]}]},
        {"monitors": [{"name": "monitor"}]},
    )
    texts = ["breach of credit-monitor: psi above 0.2", "exp"]
    assert policy.bind_monitor(texts) == Binding("a", "drift")  # both named: a comes first
    texts = ["breach of credit-monitor: jensen_shannon above 0.2"]
    assert policy.bind_monitor(texts) == Binding("b", "drift")  # a's signal is not named
    assert policy.bind_monitor(["nothing here"]) is None
    reversed_order = two_models(
        {"monitors": [{"name": "monitor"}]},
        {"monitors": [{"name": "credit-monitor"}]},
    )
    assert reversed_order.bind_monitor(["credit-monitor"]) == Binding("a", "drift")


def test_alerts_bind_by_name_or_by_id_case_insensitively_first_in_the_file() -> None:
    rule_id = "/subscriptions/x/providers/Microsoft.Insights/metricAlerts/B-Rule"
    policy = two_models(
        {"drift_alerts": [rule_id.lower()]},
        {"health_alerts": ["named-rule"], "drift_alerts": []},
    )
    assert policy.bind_alert("named-rule", "") == Binding("b", "health")
    assert policy.bind_alert("named-rule", rule_id) == Binding("a", "drift")  # a is first
    assert policy.bind_alert("other", rule_id.upper()) == Binding("a", "drift")
    assert policy.bind_alert("other", "") is None


def test_a_policy_of_2000_models_binds_its_last_model() -> None:
    """The indexed look-ups on a large policy (their cost: ``python -m benchmarks scaling``)."""
    import copy

    base = POLICY["models"]["credit"]
    models = {}
    for n in range(2000):
        spec = copy.deepcopy(base)
        spec["signals"] = {"monitors": [{"name": f"mon-{n:04d}"}], "drift_alerts": [f"r-{n}"]}
        models[f"m{n:04d}"] = spec
    policy = parse_policy({"models": models}, "many")
    assert policy.bind_monitor(["threshold breached: mon-1999 / psi"]) == Binding("m1999", "drift")
    assert policy.bind_alert("r-1999", "") == Binding("m1999", "drift")


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"OMP_NUM_THREADS": 2, "HTTPS_PROXY": None, "DEBUG": True}, None),
        (["HTTPS_PROXY", "NO_PROXY"], None),
        ({"AUTOPILOT_FUNCTION_KEYS": None}, "AUTOPILOT_* names are the service's settings"),
        (["autopilot_table_connection_string"], "AUTOPILOT_* names"),
        ({"1BAD": "x"}, "is not a variable name"),
        ({"A=B": "x"}, "is not a variable name"),
        ({"A": {"nested": 1}}, "must be a string or a number"),
        ({"A": "x\0y"}, "has a NUL"),
        (["A", "A"], "A is given twice"),
        ("A", "give a mapping NAME: value, or a list of NAMEs"),
    ],
)
def test_training_environment_is_validated(environment: Any, expected: str | None) -> None:
    spec = POLICY["models"]["credit"]
    data = {
        "models": {"credit": {**spec, "training": {**spec["training"], "environment": environment}}}
    }
    if expected is None:
        declared = parse_policy(data).models["credit"].training.environment
        names = environment if isinstance(environment, list) else list(environment)
        assert list(declared) == names
        assert all(v is None or isinstance(v, str) for v in declared.values())
        if isinstance(environment, dict):
            assert declared.get("OMP_NUM_THREADS") == "2" and declared.get("DEBUG") == "true"
            assert declared["HTTPS_PROXY"] is None  # passed through from the service
        return
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "policy.yaml")
    assert "model 'credit': field 'training.environment'" in str(info.value)
    assert expected in str(info.value)
