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
        ({"gate": {}}, "model 'credit': field 'gate.primary_metric': is required but missing"),
        ({"rollout": {"endpoint": "ep", "steps": [50, 10, 100]}}, "steps must strictly increase"),
        ({"rollout": {"endpoint": "ep", "steps": [10, 50]}}, "last step must be 100"),
        ({"cooldown": "soon"}, "field 'cooldown'"),
        ({"training": {"experiment": "x"}}, "give 'command'"),
        (
            {"gate": {"primary_metric": "auc", "floors": [{"metric": "auc"}]}},
            "needs 'min' or 'max'",
        ),
        ({"unknown_field": 1}, "field 'unknown_field': is not a known field (valid here: mode,"),
        ({"cooldwn": "1h"}, "field 'cooldwn': is not a known field; did you mean 'cooldown'?"),
        (
            {"gate": {"primary_metric": "auc", "min_improvment": 0.1}},
            "field 'gate.min_improvment': is not a known field; did you mean 'min_improvement'?",
        ),
        (
            {"rollout": {"endpoint": "ep", "analysis": "sequentail"}},
            "field 'rollout.analysis'",
        ),
        (
            {"rollout": {"endpoint": "ep", "sequential": {"tolerance": 0.02, "delta": 0.01}}},
            "delta (0.01) must be at least tolerance (0.02)",
        ),
        (
            {"rollout": {"endpoint": "ep", "sequential": {"alpah": 0.01}}},
            "field 'rollout.sequential.alpah': is not a known field; did you mean 'alpha'?",
        ),
        (
            {"rollout": {"endpoint": "ep", "sequential": {"alpha": 0.7}}},
            "field 'rollout.sequential.alpha'",
        ),
        (
            {"rollout": {"endpoint": "ep", "sequential": {"on_max_bake": "wait"}}},
            "field 'rollout.sequential.on_max_bake'",
        ),
        (
            {"training": {"experiment": "x", "command": ["{python}", "t.py", "{inputs.dat}"]}},
            "field 'training': command uses {inputs.dat} but 'inputs' has no 'dat'",
        ),
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
    with pytest.raises(PolicyError, match="not valid YAML") as info:
        load_policy(bad)
    assert str(info.value).startswith(f"{bad}:2: not valid YAML")
    assert "<unicode string>" not in str(info.value)


EXAMPLE = (ROOT / "examples" / "policy.yaml").read_text()


def test_schema_errors_point_at_the_line_of_the_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE.replace("    cooldown: 2m\n", "    cooldwn: 2m\n"))
    line = EXAMPLE.splitlines().index("    cooldown: 2m") + 1
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"{path}:{line}: model 'credit-risk': field 'cooldwn': is not a known field; "
        "did you mean 'cooldown'?"
    )


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE.replace("    cooldown: 2m\n", "    cooldown: 2m\n    cooldown: 1h\n"))
    first = EXAMPLE.splitlines().index("    cooldown: 2m") + 1
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}:{first + 1}: not valid YAML: found duplicate key")
    assert f"'cooldown' (first on line {first})" in str(info.value)


def test_a_policy_without_models_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nmodels: {}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"{path}:2: field 'models': names no model; add at least one under 'models'"
    )


def test_built_in_inputs_need_no_declaration() -> None:
    spec = {**POLICY["models"]["credit"]}
    spec["training"] = {
        "experiment": "x",
        "command": ["{python}", "t.py", "{inputs.model_name}", "{inputs.champion_version}"],
    }
    assert parse_policy({"models": {"credit": spec}}, "p").models["credit"]


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


def test_sequential_rollout_errors_point_at_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    typo = EXAMPLE.replace("        check_every: 5s", "        chek_every: 5s")
    path.write_text(typo)
    line = typo.splitlines().index(next(x for x in typo.splitlines() if "chek_every" in x)) + 1
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == (
        f"{path}:{line}: model 'credit-risk': field 'rollout.sequential.chek_every': is not a "
        "known field; did you mean 'check_every'?"
    )
    path.write_text(EXAMPLE.replace("        delta: 0.10 ", "        delta: 0.01 "))
    with pytest.raises(PolicyError, match=r"delta \(0.01\) must be at least tolerance \(0.05\)"):
        load_policy(path)
