"""The policy file: per model, which signals bind to it and how its lifecycle is run.

The policy is operator-owned configuration. It — never an event payload — chooses commands,
paths, endpoints and deployment targets. ``load_policy`` validates it and reports every
problem with the file, the model and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import PolicyError
from shared.policy_estimate import LOSS_METRICS as LOSS_METRICS
from shared.policy_estimate import EstimatedPerformance as EstimatedPerformance
from shared.policy_fields import Duration, Name, _Strict
from shared.policy_fields import parse_duration as parse_duration
from shared.policy_source import format_errors, read_yaml
from shared.settings import app_path

_INPUT_PLACEHOLDER = re.compile(r"\{inputs\.([^}]*)\}")
BUILT_IN_INPUTS = ("model_name", "champion_version")  # set per job by handlers.training


class MonitorBinding(_Strict):
    """An Azure ML v2 model monitor whose threshold breaches are drift signals."""

    name: str = Field(min_length=1)
    signals: tuple[str, ...] = ()  # empty = any signal of this monitor


class Signals(_Strict):
    drift_alerts: tuple[str, ...] = ()  # Azure Monitor alert rule names or ids -> drift signal
    health_alerts: tuple[str, ...] = ()  # alert rule names or ids -> endpoint health signal
    monitors: tuple[MonitorBinding, ...] = ()
    datadrift: tuple[str, ...] = ()  # v1 DataDrift monitor names
    estimated_performance: EstimatedPerformance | None = None


class Confirmation(_Strict):
    """Retrain only after ``signals`` distinct drift signals within ``within``.

    With ``query`` (KQL, run on the Log Analytics workspace of ``AUTOPILOT_LOG_WORKSPACE_ID``
    over the last ``within``), the number the query returns is what must reach ``signals``
    instead: e.g. how many monitoring windows breached, so one noisy window does not retrain.
    """

    signals: int = Field(default=1, ge=1, le=1000)
    within: Duration = 3600.0
    query: str | None = Field(default=None, min_length=1, max_length=10_000)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VALUE_CHARS = 32_768


def _parse_environment(value: Any) -> dict[str, str | None]:
    """``training.environment``: a mapping NAME -> value (a value-less NAME is passed through
    from the service's environment), or a list of NAMEs that are all passed through."""
    if value is None:
        return {}
    if isinstance(value, list | tuple):
        items: list[tuple[Any, Any]] = [(name, None) for name in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise ValueError("give a mapping NAME: value, or a list of NAMEs to pass through")
    result: dict[str, str | None] = {}
    for name, raw in items:
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a variable name (letters, digits, '_')")
        if name.upper().startswith("AUTOPILOT_"):
            raise ValueError(
                f"{name}: AUTOPILOT_* names are the service's settings or set by the platform"
            )
        if name in result:
            raise ValueError(f"{name} is given twice")
        if raw is None:
            result[name] = None
            continue
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, str | int | float):
            text = str(raw)
        else:
            raise ValueError(f"{name}: the value must be a string or a number")
        if "\0" in text or len(text) > MAX_ENV_VALUE_CHARS:
            raise ValueError(f"{name}: the value has a NUL or is over {MAX_ENV_VALUE_CHARS} chars")
        result[name] = text
    return result


JobEnvironment = Annotated[dict[str, str | None], BeforeValidator(_parse_environment)]


class Training(_Strict):
    experiment: Name
    command: tuple[str, ...] = ()  # embedded platform: argv, no shell; placeholders allowed
    job_file: str | None = None  # Azure ML: command or pipeline job YAML (see _app_relative)
    inputs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # embedded platform: the job's variables beyond the allow-listed basics (PATH, HOME, ...)
    environment: JobEnvironment = Field(default_factory=dict)
    timeout: Duration = 3600.0
    accept_foreign_jobs: bool = False

    @field_validator("job_file")
    @classmethod
    def _app_relative(cls, value: str | None) -> str | None:
        """A relative job_file is taken from the app root, as the policy path is."""
        return str(app_path(value)) if value else value

    @model_validator(mode="after")
    def _needs_something_to_run(self) -> Training:
        if not self.command and not self.job_file:
            raise ValueError("give 'command' (embedded platform) or 'job_file' (Azure ML) or both")
        return self

    @model_validator(mode="after")
    def _placeholders_name_inputs(self) -> Training:
        known = {*self.inputs, *BUILT_IN_INPUTS}
        for item in self.command:
            for name in _INPUT_PLACEHOLDER.findall(item):
                if name not in known:
                    raise ValueError(
                        f"command uses {{inputs.{name}}} but 'inputs' has no {name!r} "
                        f"(inputs: {', '.join(sorted(self.inputs)) or 'none'}; "
                        f"built in: {', '.join(BUILT_IN_INPUTS)})"
                    )
        return self


class Guardrail(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"] = "maximize"
    tolerance: float = Field(default=0.0, ge=0)


class Floor(_Strict):
    """An absolute bound the challenger must meet whatever the champion does."""

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> Floor:
        if self.min is None and self.max is None:
            raise ValueError("a floor needs 'min' or 'max'")
        return self


class SliceCheck(_Strict):
    """Per-segment check of the primary metric, e.g. per region: catches 'better on average,
    much worse on a slice'. Segments with fewer than ``min_samples`` rows are reported, not judged.
    """

    column: str
    min_samples: int = Field(default=30, ge=1)
    tolerance: float = Field(default=0.02, ge=0)


class Gate(_Strict):
    primary_metric: str
    direction: Literal["maximize", "minimize"] = "maximize"
    min_improvement: float = Field(default=0.0, ge=0)
    improvement: Literal["absolute", "relative"] = "absolute"
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)  # paired bootstrap level
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000)
    seed: int = 20260101
    min_samples: int = Field(default=0, ge=0)
    slices: tuple[SliceCheck, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()
    floors: tuple[Floor, ...] = ()
    approval_required: bool = False
    approval_timeout: Duration = 72 * 3600.0


class Health(_Strict):
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    max_latency_p95_ms: float | None = Field(default=None, gt=0)
    max_latency_ratio: float | None = Field(default=2.0, gt=0)
    min_requests: int = Field(default=20, ge=0)


class Shadow(_Strict):
    """Mirror live traffic to the new deployment before any user traffic moves to it."""

    percent: int = Field(default=100, ge=1, le=100)
    bake: Duration = 300.0


class Sequential(_Strict):
    """``rollout.analysis: sequential``: anytime-valid judge of new against live (see
    shared/sequential.py). Tolerances and delta are differences of proportions (0.01 = 1 pp)."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # P(roll back | new as good as live)
    beta: float = Field(default=0.05, gt=0, lt=0.5)  # P(pass | new worse by delta)
    tolerance: float = Field(default=0.01, gt=0, lt=1)  # error-rate increase allowed
    delta: float = Field(default=0.03, gt=0, lt=1)  # error-rate harm that must not pass
    latency_tolerance: float = Field(default=0.05, gt=0, lt=1)  # extra share above live's p95
    # a step's first seconds after its traffic change (a cold deployment, a moving load) are
    # judged on errors only: latency counts from then on, and no step passes before it
    latency_warmup: Duration = 30.0
    max_bake: Duration = 1800.0  # per step; then on_max_bake
    on_max_bake: Literal["hold", "fail"] = "fail"  # hold: keep looking; fail: roll back
    check_every: Duration = 30.0  # how often a step is looked at

    @model_validator(mode="after")
    def _delta_at_least_tolerance(self) -> Sequential:
        if self.delta < self.tolerance:
            raise ValueError(
                f"delta ({self.delta:g}) must be at least tolerance ({self.tolerance:g}): "
                "a harm smaller than the tolerance is allowed to pass"
            )
        if self.check_every <= 0:
            raise ValueError("check_every must be positive")
        return self


class Rollout(_Strict):
    endpoint: Name
    shadow: Shadow | None = None
    steps: tuple[int, ...] = (10, 50, 100)
    bake: Duration = 300.0
    watch: Duration = 600.0  # after promotion: health breach or bound alert rolls back
    traffic_attempts: int = Field(default=3, ge=1, le=20)  # before failing safe
    max_wait: Duration = 3600.0  # per step, waiting for enough traffic, before failing safe
    health: Health = Health()
    analysis: Literal["threshold", "sequential"] = "threshold"  # how a step is judged
    sequential: Sequential = Sequential()

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("needs at least one step")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("each step is a traffic percentage between 1 and 100")
        if list(steps) != sorted(set(steps)):
            raise ValueError("steps must strictly increase")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps


class ModelPolicy(_Strict):
    mode: Literal["live", "observe"] | None = None
    signals: Signals = Signals()
    cooldown: Duration | None = None
    confirm: Confirmation = Confirmation()
    training: Training
    gate: Gate
    rollout: Rollout | None = None


class Defaults(_Strict):
    mode: Literal["live", "observe"] = "live"
    cooldown: Duration = 6 * 3600.0


class PolicyFile(_Strict):
    version: Literal[1] = 1
    defaults: Defaults = Defaults()
    models: dict[Name, ModelPolicy] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_binding_names_one_model(self) -> PolicyFile:
        owners: dict[tuple[str, str], str] = {}
        for model, spec in self.models.items():
            names = [("alert", n) for n in spec.signals.drift_alerts + spec.signals.health_alerts]
            names += [("monitor", m.name) for m in spec.signals.monitors]
            names += [("datadrift", n) for n in spec.signals.datadrift]
            for kind_name in names:
                other = owners.setdefault(kind_name, model)
                if other != model:
                    raise ValueError(
                        f"{kind_name[0]} binding {kind_name[1]!r} is bound to both "
                        f"{other!r} and {model!r}; a signal must name one model"
                    )
        return self


SignalKind = Literal["drift", "health"]


@dataclass(frozen=True, slots=True)
class Binding:
    model: str
    kind: SignalKind


class Policy:
    """A validated policy with the look-ups the intake needs."""

    def __init__(self, spec: PolicyFile, source: str = "<policy>") -> None:
        self.spec = spec
        self.source = source
        # Binding look-ups, built once: constant time per event however many models there are.
        # Each entry keeps its position in policy order, so the first binding in the file wins
        # exactly as a scan of the models in order would.
        self._alerts: dict[str, tuple[int, Binding]] = {}
        self._alert_ids: dict[str, tuple[int, Binding]] = {}
        self._datadrift: dict[str, Binding] = {}
        self._monitors: list[tuple[str, MonitorBinding]] = []
        order = 0
        for model, m in spec.models.items():
            kinds: tuple[tuple[SignalKind, tuple[str, ...]], ...] = (
                ("drift", tuple(m.signals.drift_alerts)),
                ("health", tuple(m.signals.health_alerts)),
            )
            for kind, names in kinds:
                for name in names:
                    entry = (order, Binding(model, kind))
                    order += 1
                    self._alerts.setdefault(name, entry)
                    self._alert_ids.setdefault(name.lower(), entry)
            for name in m.signals.datadrift:
                self._datadrift.setdefault(name, Binding(model, "drift"))
            self._monitors += [(model, monitor) for monitor in m.signals.monitors]
        self._monitor_names: Any = None
        if self._monitors:
            import ahocorasick  # multi-pattern substring search, one pass over each text

            automaton = ahocorasick.Automaton()
            for index, (_, monitor) in enumerate(self._monitors):
                indices = automaton.get(monitor.name, ())
                automaton.add_word(monitor.name, (*indices, index))
            automaton.make_automaton()
            self._monitor_names = automaton

    @property
    def models(self) -> dict[str, ModelPolicy]:
        return self.spec.models

    def model(self, name: str) -> ModelPolicy | None:
        return self.spec.models.get(name)

    def mode(self, name: str) -> str:
        spec = self.spec.models[name]
        return spec.mode or self.spec.defaults.mode

    def cooldown(self, name: str) -> float:
        spec = self.spec.models[name]
        return spec.cooldown if spec.cooldown is not None else self.spec.defaults.cooldown

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.models)

    def bind_alert(self, rule_name: str, rule_id: str) -> Binding | None:
        """Alert rules bind by name or by full resource id (ids compared case-insensitively)."""
        found = [self._alerts.get(rule_name)]
        if rule_id:
            found.append(self._alert_ids.get(rule_id.lower()))
        hits = [entry for entry in found if entry is not None]
        return min(hits, key=lambda entry: entry[0])[1] if hits else None

    def bind_monitor(self, texts: list[str]) -> Binding | None:
        """A v2 monitor binds when its name (and signal, if listed) appears in the run's texts;
        of several, the first in the policy."""
        if self._monitor_names is None:
            return None
        named: set[int] = set()
        for text in texts:
            for _, indices in self._monitor_names.iter(text):
                named.update(indices)
        for index in sorted(named):
            model, monitor = self._monitors[index]
            if monitor.signals and not any(s in t for s in monitor.signals for t in texts):
                continue
            return Binding(model, "drift")
        return None

    def bind_datadrift(self, name: str) -> Binding | None:
        return self._datadrift.get(name)


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the policy must be a mapping with a 'models' key")
    try:
        return Policy(PolicyFile.model_validate(data), source)
    except ValidationError as exc:
        raise PolicyError(format_errors(source, data, exc, PolicyFile)) from exc


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    return parse_policy(read_yaml(path), str(path))
