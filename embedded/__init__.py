"""The embedded (offline) defaults of the cloud parts: a local ML platform that really trains,
registers, serves and shifts traffic; the endpoint's metrics; a local data-drift monitor.

Every module keeps heavy imports (MLflow, pandas, numpy, scipy) inside the functions that need
them, so importing the platform adapter costs the service's cold start almost nothing.

``__all__`` names the modules other layers use (``drift`` and ``endpoint`` also run as
``python -m embedded.drift`` / ``python -m embedded.endpoint``).
"""

__all__ = [
    "drift",
    "endpoint",
    "estimate_monitor",
    "metrics",
    "platform",
]
