"""The Azure ML client: settings, the lazily built ``MLClient``, retried calls and waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared import budget as budgets
from shared import retry as retries
from shared.adapters.azure_ml.common import (
    IN_PROGRESS_RETRY_AFTER_S,
    TESTING_REAL_WAIT_S,
    ml_message,
)
from shared.errors import InProgress, PermanentError, SettingsError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

T = TypeVar("T")


class AzureMLClient:
    """What every part of the adapter shares: the workspace, the client and how it calls it."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        credential: TokenCredential | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicies = retries.DEFAULT_POLICIES,
        deployment_template: str | None = None,
        instance_type: str = "Standard_DS3_v2",
        instance_count: int = 1,
        model_type: str = "mlflow_model",
        model_output: str = "model",
        evaluation_datastore: str | None = "workspaceblobstore",
        lro_wait_s: float = 10.0,
    ) -> None:
        for name, value in (
            ("subscription_id", subscription_id),
            ("resource_group", resource_group),
            ("workspace", workspace),
        ):
            if not value:
                raise SettingsError(f"Azure ML {name} is empty")
        if model_type not in ("mlflow_model", "custom_model", "triton_model"):
            raise SettingsError(f"Azure ML model_type {model_type!r} is not a model asset type")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self._credential = credential
        self._transport = transport
        self._retry = retry
        self._deployment_template = deployment_template
        self._instance_type = instance_type
        self._instance_count = instance_count
        self._model_type = model_type
        self._model_output = model_output
        self._evaluation_datastore = evaluation_datastore
        self._lro_wait_s = lro_wait_s
        self._client: MLClient | None = None

    @property
    def deployment_template(self) -> str | None:
        """The managed online deployment YAML every new deployment starts from, if any."""
        return self._deployment_template

    # -- plumbing --

    def _credential_or_default(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def _sdk_kwargs(self) -> dict[str, Any]:
        """Client options: our transport (tests) and no SDK-level retries (ours only)."""
        kwargs: dict[str, Any] = {"retry_total": 0}
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    @property
    def ml(self) -> MLClient:
        """The ``MLClient``, built (and ``azure.ai.ml`` imported) on first use."""
        if self._client is None:
            from azure.ai.ml import MLClient

            self._client = MLClient(
                self._credential_or_default(),
                self.subscription_id,
                self.resource_group,
                self.workspace,
                enable_telemetry=False,
                **self._sdk_kwargs(),
            )
        return self._client

    def _call(
        self, policy: retries.RetryPolicy, what: str, fn: Callable[..., T], *args: Any, **kw: Any
    ) -> T:
        """Run an SDK call under ``policy``; azure-ai-ml's own validation errors are permanent."""
        from azure.ai.ml.exceptions import MlException

        try:
            return retries.call_with_retry(policy, fn, *args, what=what, **kw)
        except MlException as exc:
            raise PermanentError(f"{what}: {ml_message(exc)}") from exc

    def _await(self, poller: Any, what: str) -> Any:
        """Wait a little for a started long-running operation; raise ``InProgress`` if it runs on.

        The wait is ``lro_wait_s`` or what is left of the invocation's budget, whichever is
        less; the operation goes on in Azure either way and a repeated call checks on it. In
        testing mode at most ``TESTING_REAL_WAIT_S`` is really waited (a fake service finishes
        in milliseconds) and the rest is charged to the budget.
        """
        wait_s = budgets.remaining(self._lro_wait_s)
        real_s = min(wait_s, TESTING_REAL_WAIT_S) if retries.is_testing() else wait_s
        try:
            poller.wait(timeout=real_s)  # raises the operation's error if it failed
            if not poller.done():
                invocation = budgets.current()
                if invocation is not None and real_s < wait_s:
                    invocation.charge(wait_s - real_s)
                raise InProgress(
                    f"{what}: still in progress after {wait_s:.0f}s; it goes on in Azure",
                    retry_after=IN_PROGRESS_RETRY_AFTER_S,
                )
            return poller.result()
        except Exception as exc:
            error = retries.translate(exc, what)
            if error is exc:
                raise
            raise error from exc
