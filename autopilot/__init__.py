"""The command line and the local Functions host (``autopilot serve``, the demo).

The top layer: nothing imports it. ``autopilot.cli:main`` is the ``autopilot`` entry point.
"""

__all__ = [
    "cli",
]
