"""Models on Azure ML: register a job's output once, tag and find the champion."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.adapters.azure_ml.common import CHAMPION_TAG, JOB_TAG, job_output_uri, parse_model_ref
from shared.adapters.azure_ml.endpoints import AzureMLEndpoints
from shared.errors import NotFound

if TYPE_CHECKING:
    from azure.ai.ml.entities import Model

log = logging.getLogger("shared.adapters.azure_ml")


class AzureMLModels(AzureMLEndpoints):
    """The model part of ``MLPlatform``; the champion lookup reads the endpoint's traffic."""

    def _versions(self, model: str) -> list[Model]:
        def listing() -> list[Model]:
            return list(self.ml.models.list(name=model))

        try:
            return self._call(self._retry.read, f"list versions of model {model}", listing)
        except NotFound:
            return []

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        for version in self._versions(model):
            if (version.tags or {}).get(JOB_TAG) == job_name:
                log.info(
                    "model %s already has version %s from job %s", model, version.version, job_name
                )
                return str(version.version)
        from azure.ai.ml.entities import Model

        entity = Model(
            name=model,
            path=job_output_uri(job_name, self._model_output),
            type=self._model_type,
            tags={**tags, JOB_TAG: job_name},
            description=f"Registered by autopilot from job {job_name}",
        )
        created = self._call(
            retries.ONCE,
            f"register model {model} from job {job_name}",
            self.ml.models.create_or_update,
            entity,
        )
        log.info("registered model %s version %s from job %s", model, created.version, job_name)
        return str(created.version)

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        if endpoint:
            live = self._live_model(endpoint)
            if live is not None:
                name, version = live
                if name == model:
                    return version
                log.warning("endpoint %s serves model %s, not %s", endpoint, name, model)
        tagged = [v for v in self._versions(model) if _is_champion(v)]
        if not tagged:
            return None
        if len(tagged) > 1:
            log.warning(
                "model %s has %d versions tagged %s; taking the highest",
                model,
                len(tagged),
                CHAMPION_TAG,
            )
        return str(max(tagged, key=lambda v: _version_key(str(v.version))).version)

    def _live_model(self, endpoint: str) -> tuple[str, str] | None:
        try:
            traffic = self.get_traffic(endpoint)
        except NotFound:
            return None
        serving = [(share, name) for name, share in traffic.items() if share > 0]
        if not serving:
            return None
        _, deployment = max(serving, key=lambda item: (item[0], item[1]))
        dep = self._deployment(endpoint, deployment)
        if dep is None:
            return None
        return parse_model_ref(getattr(dep, "model", None))

    def set_champion(self, model: str, version: str) -> None:
        versions = self._versions(model)
        target = next((v for v in versions if str(v.version) == str(version)), None)
        if target is None:
            raise NotFound(f"model {model} has no version {version}")
        # Tag the new champion first: a crash in between leaves two tagged versions (the
        # highest wins), never none.
        if not _is_champion(target):
            target.tags = {**(target.tags or {}), CHAMPION_TAG: "true"}
            self._update_model(target)
        for other in versions:
            if other is not target and _is_champion(other):
                other.tags = {k: v for k, v in (other.tags or {}).items() if k != CHAMPION_TAG}
                self._update_model(other)
        log.info("model %s champion is now version %s", model, version)

    def _update_model(self, version: Model) -> None:
        self._call(
            self._retry.write,
            f"update tags of model {version.name}:{version.version}",
            self.ml.models.create_or_update,
            version,
        )


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _is_champion(version: Any) -> bool:
    return str((version.tags or {}).get(CHAMPION_TAG, "")).lower() == "true"
