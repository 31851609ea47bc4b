"""The Azure Functions triggers, one blueprint per module, and the runtime they share.

``__all__`` names what other layers use: the blueprints ``function_app`` registers and
``runtime`` (the service's composition per process, also used by ``autopilot serve``).
"""

__all__ = [
    "alerts",
    "api",
    "azureml_events",
    "console",
    "eventgrid_webhook",
    "reconcile",
    "runtime",
]
