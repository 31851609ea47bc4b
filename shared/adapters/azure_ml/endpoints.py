"""Online endpoints on Azure ML: deployments, traffic and mirror, never waiting long."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.adapters.azure_ml.client import AzureMLClient
from shared.adapters.azure_ml.common import (
    ENDPOINT_BUSY,
    FAILED,
    IN_PROGRESS_RETRY_AFTER_S,
    READY,
    text,
)
from shared.errors import AlreadyExists, InProgress, NotFound, PermanentError, TransientError

if TYPE_CHECKING:
    from azure.ai.ml.entities import OnlineDeployment

log = logging.getLogger("shared.adapters.azure_ml")


class AzureMLEndpoints(AzureMLClient):
    """The endpoint and deployment part of ``MLPlatform``."""

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        """Start creating the deployment and return once it is ready, or raise ``InProgress``.

        A repeated call checks on it: ``AlreadyExists`` once it succeeded, ``InProgress`` while
        it (or a deletion of a same-named deployment) runs, ``PermanentError`` if it failed.
        """
        what = f"create deployment {endpoint}/{deployment}"
        existing = self._deployment(endpoint, deployment)
        if existing is not None:
            state = text(getattr(existing, "provisioning_state", ""))
            if state == READY:
                raise AlreadyExists(f"deployment {endpoint}/{deployment} already exists")
            if state in FAILED:
                raise PermanentError(f"{what}: a deployment of that name exists in state {state}")
            if state == "Deleting":
                raise InProgress(
                    f"{what}: a deployment of that name is still being deleted; it is created "
                    "once that is done",
                    retry_after=IN_PROGRESS_RETRY_AFTER_S,
                )
            # Creating, Updating, Scaling (or a state this code does not know): not ready yet.
            raise InProgress(
                f"{what}: deployment is still {state or 'provisioning'}",
                retry_after=IN_PROGRESS_RETRY_AFTER_S,
            )
        entity = self._deployment_entity(endpoint, deployment, model, version)
        # Not retried: a second PUT while the first is provisioning conflicts; the caller's
        # next attempt sees the deployment and decides from its state.
        poller = self._call(
            retries.ONCE, what, self.ml.online_deployments.begin_create_or_update, entity
        )
        self._await(poller, what)
        log.info("created deployment %s/%s serving %s:%s", endpoint, deployment, model, version)

    def _deployment(self, endpoint: str, deployment: str) -> Any:
        """The deployment entity, or None if there is none of that name."""
        try:
            return self._call(
                self._retry.read,
                f"get deployment {endpoint}/{deployment}",
                self.ml.online_deployments.get,
                name=deployment,
                endpoint_name=endpoint,
            )
        except NotFound:
            return None

    def _deployment_entity(
        self, endpoint: str, deployment: str, model: str, version: str
    ) -> OnlineDeployment:
        from azure.ai.ml import load_online_deployment
        from azure.ai.ml.entities import ManagedOnlineDeployment

        tags = {"autopilot_model": model, "autopilot_version": str(version)}
        ref = f"azureml:{model}:{version}"
        if self._deployment_template:
            try:
                entity: OnlineDeployment = load_online_deployment(self._deployment_template)
            except Exception as exc:
                raise PermanentError(
                    f"deployment template {self._deployment_template}: {type(exc).__name__}: "
                    f"{retries.redact(str(exc))}"
                ) from exc
            entity.name = deployment
            entity.endpoint_name = endpoint
            entity.model = ref
            entity.tags = {**(entity.tags or {}), **tags}
            return entity
        return ManagedOnlineDeployment(
            name=deployment,
            endpoint_name=endpoint,
            model=ref,
            instance_type=self._instance_type,
            instance_count=self._instance_count,
            tags=tags,
        )

    def _endpoint(self, endpoint: str) -> Any:
        return self._call(
            self._retry.read, f"get endpoint {endpoint}", self.ml.online_endpoints.get, endpoint
        )

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        """Traffic per deployment, keyed by the deployment's name as azure-ai-ml spells it.

        The SDK lower-cases deployment names (``Deployment.__init__``) and the traffic keys it
        sends (``begin_create_or_update``), while an endpoint set up by other means may hold
        ``Blue: 100``; ``get`` then adds the listed deployment at 0% as ``blue``. The keys are
        merged here under the lower-case name, the one every later call sends and reads back.
        """
        return _by_deployment(self._endpoint(endpoint).traffic)

    def _mirror(self, endpoint: str) -> dict[str, int]:
        return _by_deployment(self._endpoint(endpoint).mirror_traffic)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        _check_shares(traffic, total=100, what=f"traffic for {endpoint}")
        self._update_endpoint(endpoint, "traffic", traffic)
        after = self.get_traffic(endpoint)
        if _nonzero(after) != _nonzero(traffic):  # deployment names compare case-insensitively
            raise TransientError(
                f"endpoint {endpoint}: traffic is {_nonzero(after)} after setting "
                f"{_nonzero(traffic)}",
                retry_after=30.0,
            )
        log.info("endpoint %s traffic set to %s", endpoint, _nonzero(traffic))

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        """Mirror (shadow) a share of live traffic to deployments; {} stops mirroring."""
        for name, share in mirror.items():
            if not 0 <= int(share) <= 50:
                raise PermanentError(f"mirror traffic for {endpoint}/{name} must be 0..50")
        self._update_endpoint(endpoint, "mirror_traffic", mirror)
        after = self._mirror(endpoint)
        if _nonzero(after) != _nonzero(mirror):
            raise TransientError(
                f"endpoint {endpoint}: mirror traffic is {_nonzero(after)} after setting "
                f"{_nonzero(mirror)}",
                retry_after=30.0,
            )
        log.info("endpoint %s mirror traffic set to %s", endpoint, _nonzero(mirror))

    def _update_endpoint(self, endpoint: str, field: str, shares: dict[str, int]) -> None:
        """Start the endpoint update unless it is already so; ``InProgress`` while it runs."""
        what = f"update {field} of endpoint {endpoint}"
        ep = self._endpoint(endpoint)
        state = text(getattr(ep, "provisioning_state", ""))
        if state in ENDPOINT_BUSY:  # ours from an earlier tick, or someone else's
            raise InProgress(
                f"{what}: endpoint is {state}; checking again later",
                retry_after=IN_PROGRESS_RETRY_AFTER_S,
            )
        if state == "Deleting":
            raise PermanentError(f"{what}: the endpoint is being deleted")
        if _nonzero(_by_deployment(getattr(ep, field))) == _nonzero(shares):
            return  # already so (an update from an earlier tick took effect): nothing to start
        setattr(ep, field, {k: int(v) for k, v in shares.items()})
        # A PUT of the same endpoint with the same shares is idempotent.
        try:
            poller = self._call(
                self._retry.lro, what, self.ml.online_endpoints.begin_create_or_update, ep
            )
        except AlreadyExists as exc:  # 409: another operation on the endpoint is running
            raise TransientError(f"{what}: endpoint is busy ({exc})", retry_after=30.0) from exc
        self._await(poller, what)

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        """Begin deleting a deployment and return without waiting for Azure (that takes
        minutes): True once it is gone, False while Azure is deleting it. Idempotent: a
        missing deployment is done, one already ``Deleting`` is not asked again."""
        what = f"delete deployment {endpoint}/{deployment}"
        existing = self._deployment(endpoint, deployment)
        if existing is None:
            log.info("deployment %s/%s is gone", endpoint, deployment)
            return True
        if text(getattr(existing, "provisioning_state", "")) == "Deleting":
            return False
        try:
            # The DELETE is sent here; the SDK's poller follows it in the background.
            poller = self._call(
                self._retry.write,
                what,
                self.ml.online_deployments.begin_delete,
                name=deployment,
                endpoint_name=endpoint,
            )
        except NotFound:
            log.info("deployment %s/%s was already gone", endpoint, deployment)
            return True
        except AlreadyExists as exc:  # 409: the deployment is busy (e.g. still updating)
            raise TransientError(f"{what}: deployment is busy ({exc})", retry_after=30.0) from exc
        if not poller.done():
            log.info("deletion of deployment %s/%s begun", endpoint, deployment)
            return False
        self._call(retries.ONCE, what, poller.result)  # finished at once: surface a failure
        log.info("deleted deployment %s/%s", endpoint, deployment)
        return True


def _nonzero(shares: dict[str, int]) -> dict[str, int]:
    """The non-zero shares, keyed by lower-cased deployment name (Azure compares names so)."""
    return {k.lower(): int(v) for k, v in sorted(shares.items()) if int(v)}


def _by_deployment(shares: dict[str, Any] | None) -> dict[str, int]:
    """Shares per deployment under the SDK's name for it (lower case), spellings merged."""
    merged: dict[str, int] = {}
    for key, value in (shares or {}).items():
        name = str(key).lower()
        merged[name] = merged.get(name, 0) + int(value)
    return merged


def _check_shares(shares: dict[str, int], *, total: int, what: str) -> None:
    values = [int(v) for v in shares.values()]
    if any(v < 0 or v > 100 for v in values):
        raise PermanentError(f"{what}: every share must be 0..100, got {shares}")
    if sum(values) not in (0, total):
        raise PermanentError(f"{what}: shares must add up to {total}, got {shares}")
