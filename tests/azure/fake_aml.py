"""A stateful fake of the Azure ML REST surface the adapter uses, on top of ``FakeAzure``.

Shapes follow the azure-rest-api-specs examples for Microsoft.MachineLearningServices
(Job/CommandJob get+createOrUpdate 2024-01-01-preview, ModelContainer get and ModelVersion list
2023-08-01-preview, OnlineEndpoint get+createOrUpdate 2022-02-01-preview, ManagedOnlineDeployment
createOrUpdate 2023-04-01-preview, Datastore get+listSecrets 2023-04-01-preview) and the async
operation URL Azure ML returns (``.../locations/<loc>/mfeOperationsStatus/odidp:<id>``).

State is plain data (``jobs``, ``models``, ``endpoints``, ``deployments``, ``blobs``) so tests
assert on what the service ended up holding, not on which calls were made.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.azure.fake_arm import ARM, FakeAzure, Recorded, Reply, arm_error

PROVIDER = "Microsoft.MachineLearningServices"
# azure-core reads retry-after-ms before Retry-After and ignores a zero delay, so the fake
# asks for a 10 ms poll interval instead of the SDK's default 5 s.
FAST_POLL = {"retry-after-ms": "10"}
# A held operation is polled by the SDK's background thread until released: not too often.
HELD_POLL = {"retry-after-ms": "200"}
STORAGE_KEY = base64.b64encode(b"fake-storage-account-key-0123456789").decode()


@dataclass
class AsyncOp:
    """An ARM asynchronous operation: InProgress for ``polls`` polls, then ``final``."""

    polls: int
    final: str = "Succeeded"
    error: dict[str, str] | None = None
    seen: int = 0
    on_done: Any = None
    held: bool = False  # InProgress however often it is polled, until finish_operations()
    deletion: bool = False  # a deployment deletion: also held while ``hold_deletes`` is set


@dataclass
class FakeAzureML:
    fake: FakeAzure
    subscription: str = "00000000-1111-2222-3333-444444444444"
    resource_group: str = "rg-ml"
    workspace: str = "ws-ml"
    location: str = "westeurope"
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    datastores: dict[str, dict[str, Any]] = field(default_factory=dict)
    components: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    blobs: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    operations: dict[str, AsyncOp] = field(default_factory=dict)
    # How many InProgress polls a deployment create / delete reports before finishing.
    create_polls: int = 2
    delete_polls: int = 1
    # True: deletions stay InProgress (as on Azure, for minutes) until release_deletes().
    hold_deletes: bool = False
    create_outcome: str = "Succeeded"
    endpoint_polls: int = 1
    # False: endpoint updates "succeed" but the traffic stays as it was (eventual consistency).
    apply_endpoint_updates: bool = True
    page_size: int = 0  # >0: model version lists are paged with nextLink
    # True: operations started from now on stay InProgress until finish_operations().
    hold_operations: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        ws = self.ws_path
        name = r"([^/]+)"
        add = self.fake.add
        add("GET", ws, self._workspace)
        add("GET", f"{ws}/jobs/{name}", self._get_job)
        add("PUT", f"{ws}/jobs/{name}", self._put_job)
        add("PUT", f"{ws}/components/{name}/versions/{name}", self._put_component)
        add("GET", f"{ws}/models/{name}", self._get_model_container)
        add("GET", f"{ws}/models/{name}/versions", self._list_versions)
        add("GET", f"{ws}/models/{name}/versions/{name}", self._get_version)
        add("PUT", f"{ws}/models/{name}/versions/{name}", self._put_version)
        add("GET", f"{ws}/onlineEndpoints/{name}", self._get_endpoint)
        add("PUT", f"{ws}/onlineEndpoints/{name}", self._put_endpoint)
        add("GET", f"{ws}/onlineEndpoints/{name}/deployments", self._list_deployments)
        add("GET", f"{ws}/onlineEndpoints/{name}/deployments/{name}", self._get_deployment)
        add("PUT", f"{ws}/onlineEndpoints/{name}/deployments/{name}", self._put_deployment)
        add("DELETE", f"{ws}/onlineEndpoints/{name}/deployments/{name}", self._delete_deployment)
        add("GET", f"{self.location_path}/mfeOperationsStatus/{name}", self._operation_status)
        add("GET", f"{self.location_path}/mfeOperationResults/{name}", self._operation_result)
        add("GET", f"{ws}/datastores/{name}", self._get_datastore)
        add("POST", f"{ws}/datastores/{name}/listSecrets", self._list_secrets)
        add("GET", r"/([^/]+)/(.+)", self._get_blob, host=self.blob_host)

    # -- addresses --

    @property
    def ws_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{self.workspace}"
        )

    @property
    def location_path(self) -> str:
        return f"/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}"

    @property
    def blob_host(self) -> str:
        return "autopilotstore.blob.core.windows.net"

    def model_id(self, name: str, version: str) -> str:
        return f"{self.ws_path}/models/{name}/versions/{version}"

    # -- seeding state --

    def add_job(self, name: str, status: str = "Completed", **properties: Any) -> dict[str, Any]:
        body = {
            "id": f"{self.ws_path}/jobs/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/jobs",
            "properties": {
                "jobType": "Command",
                "status": status,
                "command": "python train.py",
                "environmentId": f"{self.ws_path}/environments/train-env/versions/1",
                "computeId": f"{self.ws_path}/computes/cpu-cluster",
                "experimentName": "churn",
                "displayName": name,
                "isArchived": False,
                "tags": {},
                "properties": {},
                "inputs": {},
                "outputs": {},
                **properties,
            },
            "systemData": _system_data(),
        }
        self.jobs[name] = body
        return body

    def add_model_version(self, name: str, version: str, tags: dict[str, str]) -> dict[str, Any]:
        body = {
            "id": self.model_id(name, version),
            "name": version,
            "type": f"{PROVIDER}/workspaces/models/versions",
            "properties": {
                "description": None,
                "tags": dict(tags),
                "properties": {},
                "isAnonymous": False,
                "isArchived": False,
                "flavors": {},
                "modelType": "mlflow_model",
                "modelUri": f"azureml://jobs/job-{version}/outputs/model/paths/",
            },
            "systemData": _system_data(),
        }
        self.models.setdefault(name, {})[version] = body
        return body

    def add_endpoint(
        self, name: str, traffic: dict[str, int], mirror: dict[str, int] | None = None
    ) -> dict[str, Any]:
        body = {
            "id": f"{self.ws_path}/onlineEndpoints/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": self.location,
            "kind": "Managed",
            "tags": {},
            "identity": {"type": "SystemAssigned", "principalId": _GUID, "tenantId": _GUID},
            "properties": {
                "authMode": "Key",
                "scoringUri": f"https://{name}.{self.location}.inference.ml.azure.com/score",
                "swaggerUri": f"https://{name}.{self.location}.inference.ml.azure.com/swagger.json",
                "provisioningState": "Succeeded",
                "traffic": dict(traffic),
                "mirrorTraffic": dict(mirror or {}),
                "properties": {},
            },
            "systemData": _system_data(),
        }
        self.endpoints[name] = body
        return body

    def add_deployment(
        self, endpoint: str, name: str, model: str, state: str = "Succeeded"
    ) -> dict[str, Any]:
        body = {
            "id": f"{self.ws_path}/onlineEndpoints/{endpoint}/deployments/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": self.location,
            "kind": "Managed",
            "tags": {},
            "sku": {"name": "Default", "tier": "Standard", "capacity": 1},
            "properties": {
                "endpointComputeType": "Managed",
                "model": model,
                "instanceType": "Standard_DS3_v2",
                "provisioningState": state,
                "appInsightsEnabled": False,
                "environmentVariables": {},
                "properties": {},
                "scaleSettings": {"scaleType": "Default"},
                "requestSettings": {
                    "maxQueueWait": "PT0.5S",
                    "requestTimeout": "PT5S",
                    "maxConcurrentRequestsPerInstance": 1,
                },
                "livenessProbe": _probe(),
                "readinessProbe": _probe(),
            },
            "systemData": _system_data(),
        }
        self.deployments[(endpoint, name)] = body
        return body

    def add_datastore(self, name: str = "workspaceblobstore", container: str = "azureml") -> None:
        self.datastores[name] = {
            "id": f"{self.ws_path}/datastores/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "description": None,
                "tags": {},
                "isDefault": name == "workspaceblobstore",
                "properties": None,
                "credentials": {"credentialsType": "AccountKey"},
                "datastoreType": "AzureBlob",
                "accountName": self.blob_host.split(".")[0],
                "containerName": container,
                "endpoint": "core.windows.net",
                "protocol": "https",
            },
            "systemData": _system_data(),
        }

    # -- workspace and jobs --

    def _workspace(self, rec: Recorded) -> Reply:
        return Reply(
            200,
            {
                "id": self.ws_path,
                "name": self.workspace,
                "type": f"{PROVIDER}/workspaces",
                "location": self.location,
                "identity": {"type": "SystemAssigned", "principalId": _GUID, "tenantId": _GUID},
                "sku": {"name": "Basic", "tier": "Basic"},
                "properties": {
                    "friendlyName": self.workspace,
                    "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                    "provisioningState": "Succeeded",
                    "workspaceId": _GUID,
                },
            },
        )

    def _get_job(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        if name not in self.jobs:
            return _not_found("Job", name)
        return Reply(200, self.jobs[name])

    def _put_job(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        properties = dict(rec.json()["properties"])
        properties["status"] = "Preparing"
        body = {
            "id": f"{self.ws_path}/jobs/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/jobs",
            "properties": properties,
            "systemData": _system_data(),
        }
        created = name not in self.jobs
        self.jobs[name] = body
        return Reply(201 if created else 200, body)

    def _put_component(self, rec: Recorded) -> Reply:
        """Pipeline jobs register their inline steps as anonymous component versions."""
        name, version = _segment(rec, -3), _segment(rec, -1)
        body = {
            "id": f"{self.ws_path}/components/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/components/versions",
            "properties": rec.json()["properties"],
            "systemData": _system_data(),
        }
        self.components[(name, version)] = body
        return Reply(201, body)

    # -- models --

    def _get_model_container(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        versions = self.models.get(name)
        if not versions:
            return _not_found("Model container", name)
        numbers = [int(v) for v in versions if v.isdigit()] or [0]
        return Reply(
            200,
            {
                "id": f"{self.ws_path}/models/{name}",
                "name": name,
                "type": f"{PROVIDER}/workspaces/models",
                "properties": {
                    "description": None,
                    "tags": {},
                    "isArchived": False,
                    "latestVersion": str(max(numbers)),
                    "nextVersion": str(max(numbers) + 1),
                },
                "systemData": _system_data(),
            },
        )

    def _list_versions(self, rec: Recorded) -> Reply:
        name = _segment(rec, -2)
        items = sorted(self.models.get(name, {}).values(), key=lambda b: _num(b["name"]))
        if rec.query.get("$orderBy", "").lower().startswith("createdtime desc"):
            items.reverse()
        if "$top" in rec.query:
            items = items[: int(rec.query["$top"])]
        start = int(rec.query.get("$skipToken", "0") or 0)
        end = start + self.page_size if self.page_size else len(items)
        page: dict[str, Any] = {"value": items[start:end]}
        if end < len(items):
            page["nextLink"] = f"{ARM}{rec.path}?api-version={rec.api_version}&$skipToken={end}"
        return Reply(200, page)

    def _get_version(self, rec: Recorded) -> Reply:
        name, version = _segment(rec, -3), _segment(rec, -1)
        body = self.models.get(name, {}).get(version)
        return Reply(200, body) if body else _not_found("Model version", f"{name}:{version}")

    def _put_version(self, rec: Recorded) -> Reply:
        name, version = _segment(rec, -3), _segment(rec, -1)
        sent = rec.json()["properties"]
        existing = self.models.get(name, {}).get(version)
        body = self.add_model_version(name, version, sent.get("tags") or {})
        body["properties"].update({k: v for k, v in sent.items() if k != "tags"})
        return Reply(200 if existing else 201, body)

    # -- endpoints and deployments --

    def _get_endpoint(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        body = self.endpoints.get(name)
        return Reply(200, body) if body else _not_found("Online endpoint", name)

    def _put_endpoint(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        sent = rec.json()
        body = self.endpoints.get(name) or self.add_endpoint(name, {})
        props = body["properties"]
        props["provisioningState"] = "Updating"
        traffic = dict(sent["properties"].get("traffic") or {})
        mirror = dict(sent["properties"].get("mirrorTraffic") or {})

        def apply(state: str) -> None:
            props["provisioningState"] = state
            if state == "Succeeded" and self.apply_endpoint_updates:
                props["traffic"], props["mirrorTraffic"] = traffic, mirror

        op_id = self._new_operation(self.endpoint_polls, on_done=apply)
        return Reply(
            201,
            body,
            {
                "Azure-AsyncOperation": self._status_url(op_id, rec.api_version),
                "x-ms-async-operation-timeout": "PT1H",
                **FAST_POLL,
            },
        )

    def _list_deployments(self, rec: Recorded) -> Reply:
        endpoint = _segment(rec, -2)
        items = [b for (ep, _), b in sorted(self.deployments.items()) if ep == endpoint]
        return Reply(200, {"value": items})

    def _deployment_key(self, endpoint: str, name: str) -> tuple[str, str]:
        """ARM resource names are case-insensitive: the stored key that names this one."""
        wanted = (endpoint.lower(), name.lower())
        return next(
            (k for k in self.deployments if (k[0].lower(), k[1].lower()) == wanted),
            (endpoint, name),
        )

    def _get_deployment(self, rec: Recorded) -> Reply:
        endpoint, name = _segment(rec, -3), _segment(rec, -1)
        body = self.deployments.get(self._deployment_key(endpoint, name))
        return Reply(200, body) if body else _not_found("Online deployment", name)

    def _put_deployment(self, rec: Recorded) -> Reply:
        endpoint, name = _segment(rec, -3), _segment(rec, -1)
        sent = rec.json()
        body = self.add_deployment(endpoint, name, sent["properties"]["model"], state="Creating")
        body["properties"].update(
            {k: v for k, v in sent["properties"].items() if k != "provisioningState"}
        )
        body["properties"]["provisioningState"] = "Creating"
        body["sku"] = sent.get("sku", body["sku"])
        body["tags"] = sent.get("tags") or {}
        op_id = self._new_operation(
            self.create_polls,
            self.create_outcome,
            on_done=lambda state: body["properties"].__setitem__("provisioningState", state),
        )
        return Reply(
            201,
            body,
            {
                "Azure-AsyncOperation": self._status_url(op_id, rec.api_version),
                "x-ms-async-operation-timeout": "PT1H",
                **FAST_POLL,
            },
        )

    def _delete_deployment(self, rec: Recorded) -> Reply:
        endpoint, name = self._deployment_key(_segment(rec, -3), _segment(rec, -1))
        if (endpoint, name) not in self.deployments:
            return Reply(204)
        self.deployments[(endpoint, name)]["properties"]["provisioningState"] = "Deleting"
        op_id = self._new_operation(
            self.delete_polls,
            on_done=lambda state: self.deployments.pop((endpoint, name), None),
        )
        self.operations[op_id].deletion = True
        result_url = (
            f"{ARM}{self.location_path}/mfeOperationResults/{op_id}?api-version={rec.api_version}"
        )
        return Reply(
            202,
            None,
            {
                "Location": result_url,
                "Azure-AsyncOperation": self._status_url(op_id, rec.api_version),
                "x-ms-async-operation-timeout": "PT1H",
                **FAST_POLL,
            },
        )

    def release_deletes(self) -> None:
        """Finish every held deletion now (the deployments are gone)."""
        self.hold_deletes = False
        for op in self.operations.values():
            if op.deletion and op.on_done is not None:
                op.seen = op.polls + 1
                op.on_done(op.final)
                op.on_done = None

    def _new_operation(self, polls: int, final: str = "Succeeded", on_done: Any = None) -> str:
        op_id = f"odidp:{_GUID}:{next(self._ids):012d}"
        error = None
        if final == "Failed":
            error = {"code": "ResourceNotReady", "message": "User container has crashed."}
        self.operations[op_id] = AsyncOp(
            polls=polls, final=final, error=error, on_done=on_done, held=self.hold_operations
        )
        return op_id

    def running_operations(self) -> int:
        return sum(1 for op in self.operations.values() if self._held(op))

    def finish_operations(self) -> None:
        """Azure finishes every held operation now (the state changes before the next poll)."""
        self.hold_operations = False
        for op in list(self.operations.values()):
            if op.held:
                op.held = False
                op.seen = op.polls + 1
                if op.on_done is not None:
                    op.on_done(op.final)
                    op.on_done = None

    def _held(self, op: AsyncOp) -> bool:
        return op.held or (op.deletion and self.hold_deletes)

    def _status_url(self, op_id: str, api_version: str | None) -> str:
        return f"{ARM}{self.location_path}/mfeOperationsStatus/{op_id}?api-version={api_version}"

    def _advance(self, op_id: str) -> AsyncOp | None:
        op = self.operations.get(op_id)
        if op is None:
            return None
        if self._held(op):
            return op
        op.seen += 1
        if op.seen > op.polls and op.on_done is not None:
            op.on_done(op.final)
            op.on_done = None
        return op

    def _operation_status(self, rec: Recorded) -> Reply:
        op_id = _segment(rec, -1)
        op = self._advance(op_id)
        if op is None:
            return _not_found("Operation", op_id)
        if self._held(op):
            return Reply(200, {"id": rec.path, "name": op_id, "status": "InProgress"}, HELD_POLL)
        status = "InProgress" if op.seen <= op.polls else op.final
        body: dict[str, Any] = {
            "id": rec.path,
            "name": op_id,
            "status": status,
            "startTime": "2026-01-01T12:00:00.000Z",
        }
        if status != "InProgress":
            body["endTime"] = "2026-01-01T12:05:00.000Z"
        if status == "Failed" and op.error:
            body["error"] = op.error
        return Reply(200, body, dict(FAST_POLL))

    def _operation_result(self, rec: Recorded) -> Reply:
        op = self._advance(_segment(rec, -1))
        if op is None:
            return _not_found("Operation", _segment(rec, -1))
        if self._held(op):
            return Reply(202, None, {"Location": rec.url, **HELD_POLL})
        if op.seen <= op.polls:
            return Reply(202, None, {"Location": rec.url, **FAST_POLL})
        return Reply(200)

    # -- datastores and blobs --

    def _get_datastore(self, rec: Recorded) -> Reply:
        name = _segment(rec, -1)
        body = self.datastores.get(name)
        return Reply(200, body) if body else _not_found("Datastore", name)

    def _list_secrets(self, rec: Recorded) -> Reply:
        name = _segment(rec, -2)
        if name not in self.datastores:
            return _not_found("Datastore", name)
        return Reply(200, {"secretsType": "AccountKey", "key": STORAGE_KEY})

    def _get_blob(self, rec: Recorded) -> Reply:
        container, _, blob = rec.path.lstrip("/").partition("/")
        data = self.blobs.get((rec.host.split(".")[0], container, blob))
        if data is None:
            return Reply(
                404,
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                "<Message>The specified blob does not exist.</Message></Error>",
                {"x-ms-error-code": "BlobNotFound", "Content-Type": "application/xml"},
            )
        return Reply(
            206,
            data,
            {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                "Accept-Ranges": "bytes",
                "ETag": '"0x8DC0000000000001"',
                "Last-Modified": "Thu, 01 Jan 2026 12:00:00 GMT",
                "x-ms-blob-type": "BlockBlob",
                "x-ms-version": rec.headers.get("x-ms-version", "2025-01-05"),
                "x-ms-server-encrypted": "true",
                "x-ms-creation-time": "Thu, 01 Jan 2026 12:00:00 GMT",
            },
        )

    def put_blob(self, container: str, blob: str, data: bytes) -> None:
        self.blobs[(self.blob_host.split(".")[0], container, blob)] = data


_GUID = "8ec59228-7cc2-4ea0-bbfa-bf8c4c63aa82"


def _system_data() -> dict[str, str]:
    return {
        "createdAt": "2026-01-01T12:34:56.999Z",
        "createdBy": "autopilot",
        "createdByType": "Application",
        "lastModifiedAt": "2026-01-01T12:34:56.999Z",
        "lastModifiedBy": "autopilot",
        "lastModifiedByType": "Application",
    }


def _probe() -> dict[str, Any]:
    return {
        "failureThreshold": 30,
        "successThreshold": 1,
        "timeout": "PT2S",
        "period": "PT10S",
        "initialDelay": "PT10S",
    }


def _segment(rec: Recorded, index: int) -> str:
    return rec.path.rstrip("/").split("/")[index]


def _num(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def _not_found(kind: str, name: str) -> Reply:
    return arm_error(404, "UserError", f"{kind} {name} was not found.")
