"""``MLPlatform`` on an Azure ML workspace, put together from its parts."""

from __future__ import annotations

from shared.adapters.azure_ml.jobs import AzureMLJobs
from shared.adapters.azure_ml.models import AzureMLModels


class AzureMLPlatform(AzureMLJobs, AzureMLModels):
    """``MLPlatform`` on an Azure ML workspace.

    ``deployment_template`` is the path of a managed online deployment YAML (instance type,
    probes, scale settings...) used for every new deployment; without it a minimal
    ``ManagedOnlineDeployment`` of ``instance_type`` x ``instance_count`` is created, which
    suits MLflow models (no scoring script needed).
    """
