"""The service's exception hierarchy: what went wrong, and what the caller should do about it.

- ``TransientError``: retry may fix it (throttling, timeouts, 5xx). Triggers answer 5xx so
  Event Grid redelivers.
- ``InProgress`` (a ``TransientError``): the platform accepted the operation and is still
  working on it; call again later (same arguments) to check, never wait for it.
- ``PermanentError``: retrying will not help; audit it and answer 2xx so it is not
  redelivered forever.
- ``BadEvent``: the payload itself is malformed; answer 400 naming the problem.
- ``Conflict``: the request is well formed but the state forbids it now; answer 409.
- ``PolicyError``: the policy file is invalid; names file, model and field.
- ``ConcurrencyError``: someone else changed the record first (stale version / ETag).
- ``AlreadyExists``: a conditional create found the key taken (job names, deployments, locks).
"""

from __future__ import annotations


class AutopilotError(Exception):
    """Base of every error this service raises on purpose."""


class TransientError(AutopilotError):
    """A failure that a later retry may fix.

    ``retry_after`` carries the server's Retry-After hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InProgress(TransientError):
    """A long-running operation was started (or is running) and has not finished yet.

    Repeating the same call later is how to check on it: it returns once the operation
    succeeded, raises ``InProgress`` again while it runs, and raises ``PermanentError`` if it
    failed. Callers record that they are waiting and let the reconciler's next tick look.
    """


class PermanentError(AutopilotError):
    """A failure that retrying will not fix."""


class NotFound(PermanentError):
    """The thing asked for does not exist."""


class AlreadyExists(AutopilotError):
    """A create found the name taken; the caller decides whether that means 'already done'."""


class ConcurrencyError(AutopilotError):
    """The record changed since it was read (stale version or ETag)."""


class BadEvent(AutopilotError):
    """An event or request payload is malformed. The message names the problem."""


class Conflict(AutopilotError):
    """A well-formed request that the current state forbids (HTTP 409). The message says why."""


class PayloadTooLarge(BadEvent):
    """The body is over the size limit (HTTP 413)."""


class PolicyError(AutopilotError):
    """The policy file is invalid. The message names the file, the model and the field."""


class SettingsError(AutopilotError):
    """Missing or contradictory settings. The message names the setting."""


class InvalidTransition(Exception):
    """A state change the cycle's (or its rollout's) state machine does not allow."""
