"""The local online endpoint: a real HTTP server hosting named deployments (blue/green ...).

- ``POST /score`` with ``{"rows": [{feature: value, ...}, ...]}`` (or a bare list of rows)
  answers ``{"predictions": [...], "deployment": "<name>"}``. Each request goes to one
  deployment drawn at random by the traffic percentages (the ``azureml-model-deployment``
  header pins one, as on Azure ML). Mirror traffic sends a copy of a share of requests to a
  shadow deployment in the background; its answer is dropped, its metrics are kept.
- ``GET /traffic``, ``GET /health``; admin routes under ``/admin`` need
  ``Authorization: Bearer <token>``: add/remove deployments, set traffic and mirror, inject
  faults (a fraction of requests answering 500, extra latency) for demos and tests.
- Routing is an immutable table swapped in one assignment: a traffic change never drops or
  half-routes an in-flight request, which keeps the table it started with.
- Every request (status, latency) and every scored row is recorded through
  :mod:`embedded.telemetry` (flushed in batches by a background thread), for the metrics
  adapter and the drift monitor in other processes.
- The endpoint's deployments, traffic and token persist in ``endpoints/<name>.json``; a
  restarted server loads them again. ``python -m embedded.endpoint --data-dir D --name N``
  runs one as its own process.
"""

from embedded.endpoint.handler import DEPLOYMENT_HEADER, MAX_BODY_BYTES
from embedded.endpoint.model import BadInput, ModelLoader, Predictor, PyfuncPredictor, mlflow_loader
from embedded.endpoint.paths import endpoints_dir, state_path, telemetry_path
from embedded.endpoint.routing import Deployment, Mirror, RoutingTable, validate_traffic
from embedded.endpoint.server import MAX_ROWS, EndpointServer

__all__ = [
    "DEPLOYMENT_HEADER",
    "MAX_BODY_BYTES",
    "MAX_ROWS",
    "BadInput",
    "Deployment",
    "EndpointServer",
    "Mirror",
    "ModelLoader",
    "Predictor",
    "PyfuncPredictor",
    "RoutingTable",
    "endpoints_dir",
    "mlflow_loader",
    "state_path",
    "telemetry_path",
    "validate_traffic",
]
