"""Start-up fails clearly on bad or contradictory settings, naming the setting."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import AppSettings, parse_keys

AZURE = {
    "AUTOPILOT_PLATFORM": "azure",
    "AUTOPILOT_STORE": "table",
    "AUTOPILOT_TABLE_ENDPOINT": "https://acct.table.core.windows.net",
    "AUTOPILOT_AZUREML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AUTOPILOT_AZUREML_RESOURCE_GROUP": "rg",
    "AUTOPILOT_AZUREML_WORKSPACE": "ws",
    "AUTOPILOT_ENDPOINT_RESOURCE_IDS": '{"credit-risk": "/subscriptions/x/onlineEndpoints/c"}',
    "AUTOPILOT_METRICS_REGION": "westeurope",
}


def test_defaults_are_the_embedded_platform_on_sqlite() -> None:
    settings = AppSettings.from_env({})
    assert (settings.platform, settings.store) == ("embedded", "sqlite")
    assert settings.reconcile_schedule == "0 */1 * * * *"


def test_complete_azure_settings_are_accepted() -> None:
    settings = AppSettings.from_env(AZURE)
    assert settings.azure.endpoint_resource_ids == {
        "credit-risk": "/subscriptions/x/onlineEndpoints/c"
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"AUTOPILOT_PLATFORM": "aws"}, "AUTOPILOT_PLATFORM must be 'embedded' or 'azure'"),
        ({"AUTOPILOT_STORE": "redis"}, "AUTOPILOT_STORE must be 'sqlite' or 'table'"),
        ({"AUTOPILOT_STORE": "sqlite"}, "AUTOPILOT_PLATFORM=azure needs AUTOPILOT_STORE=table"),
        (
            {"AUTOPILOT_AZUREML_WORKSPACE": "", "AUTOPILOT_AZUREML_RESOURCE_GROUP": ""},
            "missing setting(s): AUTOPILOT_AZUREML_RESOURCE_GROUP, AUTOPILOT_AZUREML_WORKSPACE",
        ),
        ({"AUTOPILOT_ENDPOINT_RESOURCE_IDS": "credit-risk=/x"}, "must be a JSON object"),
        ({"AUTOPILOT_METRICS_REGION": ""}, "AUTOPILOT_METRICS_REGION"),
        ({"AUTOPILOT_TABLE_ENDPOINT": ""}, "AUTOPILOT_STORE=table needs AUTOPILOT_TABLE_ENDPOINT"),
        ({"AUTOPILOT_STALE_AFTER_S": "soon"}, "AUTOPILOT_STALE_AFTER_S must be a number"),
        ({"AUTOPILOT_DELIVERY_RETENTION_S": "3600"}, "must be at least 172800 (48 hours)"),
        ({"AUTOPILOT_DELIVERY_RETENTION_S": "1w"}, "AUTOPILOT_DELIVERY_RETENTION_S must be a"),
        ({"AUTOPILOT_AUDIT_SHARDS": "0"}, "AUTOPILOT_AUDIT_SHARDS must be a whole number"),
        ({"AUTOPILOT_AUDIT_SHARDS": "257"}, "AUTOPILOT_AUDIT_SHARDS must be a whole number"),
        ({"AUTOPILOT_AUDIT_SHARDS": "eight"}, "AUTOPILOT_AUDIT_SHARDS must be a whole number"),
    ],
)
def test_bad_settings_name_the_setting(change: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        AppSettings.from_env({**AZURE, **change})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("alice", "entry 1 must look like name=key"),
        ("alice=short", "shorter than 16 characters"),
        ("a=0123456789abcdefgh,a=0123456789abcdefgh", "names 'a' twice"),
    ],
)
def test_bad_function_keys_never_echo_the_key(raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_keys(raw)
    assert message in str(info.value)
    assert "0123456789abcdefgh" not in str(info.value)


def test_audit_shards_default_to_one_chain_and_reach_the_table_audit_log() -> None:
    from composition.wiring import build_store

    assert AppSettings.from_env(AZURE).audit_shards == 1
    conn = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:9/a;"
    settings = AppSettings.from_env(
        {**AZURE, "AUTOPILOT_AUDIT_SHARDS": "32", "AUTOPILOT_TABLE_CONNECTION_STRING": conn}
    )
    _, audit = build_store(settings)  # builds clients lazily: no request is sent
    assert settings.audit_shards == 32 and getattr(audit, "shards", None) == 32


def test_missing_policy_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="AUTOPILOT_POLICY is not set"):
        AppSettings.from_env({}).require_policy()


def test_a_policy_confirming_with_a_log_query_needs_the_log_analytics_workspace() -> None:
    from composition.wiring import build_logs
    from shared.adapters.azure_monitor import LogAnalyticsQueries
    from tests.fakes import make_policy

    asking = make_policy(confirm={"signals": 2, "query": "AmlComputeJobEvent | count"})
    with pytest.raises(SettingsError, match="credit confirm drift with a Log Analytics query"):
        build_logs(AppSettings.from_env({}), asking)
    assert build_logs(AppSettings.from_env({}), make_policy()) is None
    workspace = "11111111-2222-3333-4444-555555555555"
    logs = build_logs(AppSettings.from_env({"AUTOPILOT_LOG_WORKSPACE_ID": workspace}), asking)
    assert isinstance(logs, LogAnalyticsQueries) and logs.workspace_id == workspace


def test_sequential_canaries_on_azure_need_the_log_analytics_workspace() -> None:
    from dataclasses import replace

    from composition.wiring import require_request_logs
    from tests.fakes import make_policy

    sequential = make_policy(rollout__analysis="sequential")
    embedded = AppSettings.from_env({})
    azure = replace(embedded, platform="azure")
    with pytest.raises(SettingsError, match="credit judge canaries sequentially"):
        require_request_logs(azure, sequential)
    workspace = "11111111-2222-3333-4444-555555555555"
    require_request_logs(
        replace(azure, azure=replace(azure.azure, log_workspace_id=workspace)), sequential
    )
    require_request_logs(embedded, sequential)  # embedded: the endpoint's own request log
    require_request_logs(azure, make_policy())  # the threshold judge needs no rows
