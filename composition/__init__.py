"""The composition root, above every layer: the only package that knows both the handlers and
the adapters (``embedded`` included).

- ``composition.wiring``: picks the adapters from settings (``build_services``, ``Runtime``).
- ``composition.bootstrap``: the bus over those services and the handler maps.
- ``composition.delivery``: the delivery service every trigger calls (dedup claim, audit,
  normalise, dispatch on the bus).
- ``composition.batch_commit``: a delivered batch in one store transaction, its side
  effects deferred to the outbox until the commit.

``functions/``, ``autopilot serve``, the CLI, the demo and the tests get their bus from here;
fault injection (``autopilot.faults``) is wired by ``autopilot`` on top of it.
"""

__all__ = [
    "batch_commit",
    "bootstrap",
    "delivery",
    "wiring",
]
