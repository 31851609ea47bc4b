"""Loaded models: the ``Predictor`` port and the MLflow pyfunc loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from shared.errors import PermanentError


class Predictor(Protocol):
    """A loaded model. Raises ``BadInput`` for rows it cannot take (answered 400)."""

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]: ...


class BadInput(ValueError):
    """The request's rows do not fit the model (missing columns, wrong types)."""


# (model, version) -> a loaded model. Raises NotFound for an unknown model version.
ModelLoader = Callable[[str, str], Predictor]


class PyfuncPredictor:
    """An MLflow pyfunc model scoring rows given as dicts."""

    def __init__(self, model: Any) -> None:
        self._model = model
        schema = model.metadata.get_input_schema()
        self._float_columns: tuple[str, ...] = ()
        if schema is not None and schema.has_input_names():
            self._float_columns = tuple(
                spec.name
                for spec in schema.inputs
                if getattr(getattr(spec, "type", None), "name", "") in ("double", "float")
            )

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        import pandas as pd
        from mlflow.exceptions import MlflowException

        frame = pd.DataFrame(rows)
        for name in self._float_columns:  # JSON has no int/float distinction: 30 means 30.0
            if name in frame.columns and frame[name].dtype.kind in "iub":
                frame[name] = frame[name].astype("float64")
        try:
            result = self._model.predict(frame)
        except MlflowException as exc:
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                raise BadInput(str(exc)) from exc
            raise
        if hasattr(result, "to_dict") and hasattr(result, "columns"):
            return list(result.to_dict(orient="records"))
        if hasattr(result, "tolist"):
            return list(result.tolist())
        return list(result)


def mlflow_loader(data_dir: Path) -> ModelLoader:
    """Loads ``models:/<model>/<version>`` from the platform's MLflow registry."""
    from embedded.registry import MlflowRegistry

    registry = MlflowRegistry(data_dir)

    def load(model: str, version: str) -> Predictor:
        import mlflow.pyfunc

        path = registry.model_path(model, version)
        try:
            return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)))
        except Exception as exc:
            raise PermanentError(f"cannot load model {model} v{version}: {exc}") from exc

    return load
