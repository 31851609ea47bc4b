"""The bottom layer: messages, the policy model, ports, the gate, normalisation, settings and
the service layer, with the adapters in ``shared.adapters``. It imports no other package.

``__all__`` names the modules the other layers use: the package's public surface (checked by
``tests/unit/test_layers.py``).
"""

__all__ = [
    "adapters",
    "budget",
    "canary_judges",
    "envelope",
    "errors",
    "estimated_performance",
    "estimation",
    "gate",
    "ground_truth",
    "json_out",
    "lifecycle",
    "log_escape",
    "log_scrub",
    "loss_estimation",
    "message_codec",
    "messagebus",
    "messages",
    "model",
    "normalise",
    "policy",
    "policy_check",
    "policy_estimate",
    "policy_fields",
    "ports",
    "redact",
    "rollout_state",
    "sequential",
    "settings",
    "traffic",
    "webhook",
]
