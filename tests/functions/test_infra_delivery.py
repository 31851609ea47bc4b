"""infra/ names the functions and the route the app registers, for both event deliveries.

No Bicep compiler runs here; these read the templates' text for what must agree with the code:
a renamed function or route would otherwise deploy a subscription Event Grid cannot validate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import function_app

ROOT = Path(__file__).resolve().parents[2]
MAIN = (ROOT / "infra" / "main.bicep").read_text()
SUBSCRIPTIONS = (ROOT / "infra" / "modules" / "azureml-subscriptions.bicep").read_text()


def registered() -> dict[str, dict[str, Any]]:
    """Function name -> its trigger binding, as the app registers them."""
    out: dict[str, dict[str, Any]] = {}
    for fn in function_app.app._function_builders:  # get_functions() may run once per app
        built = fn.build()
        bindings = [b.get_dict_repr() for b in built.get_bindings()]
        out[str(built.get_function_name())] = next(
            b for b in bindings if "Trigger" in str(b["type"])
        )
    return out


def allowed(text: str, param: str) -> list[str]:
    match = re.search(rf"@allowed\(\[\n((?:\s+'[^']+'\n)+)\]\)\nparam {param} ", text)
    assert match, param
    return re.findall(r"'([^']+)'", match.group(1))


def test_both_templates_offer_the_trigger_and_the_webhook_with_the_trigger_by_default() -> None:
    for text in (MAIN, SUBSCRIPTIONS):
        assert allowed(text, "eventDelivery") == ["trigger", "webhook"]
        assert "param eventDelivery string = 'trigger'" in text
    assert "eventDelivery: eventDelivery" in MAIN  # passed through to the module


def test_each_keyed_url_is_the_route_of_the_function_whose_key_it_carries() -> None:
    """``.../api/<route>?code=${param}``: the function at that route has the key ``param``."""
    functions = registered()
    resources = dict(
        re.findall(
            r"resource (\w+) 'Microsoft.Web/sites/functions@[^']+' existing = \{\n"
            r"  parent: functionApp\n  name: '(\w+)'",
            MAIN,
        )
    )
    keys = {
        param: resources[parent]
        for parent, param in re.findall(
            r"'Microsoft.Web/sites/functions/keys@[^']+' = [^{]*\{\n  parent: (\w+)\n"
            r"  name: \w+\n  value: (\w+)",
            MAIN,
        )
    }
    urls = re.findall(r"defaultHostName\}/api/([a-z/]+)\?code=\$\{(\w+)\}", MAIN)
    assert {param for _, param in urls} == {"alertsWebhookKey", "eventsWebhookKey"}
    for route, param in urls:
        function = functions[keys[param]]
        assert (function["type"], function["route"]) == ("httpTrigger", route)
    webhook = functions[keys["eventsWebhookKey"]]
    assert {str(m.value) for m in webhook["methods"]} >= {"POST", "OPTIONS"}  # + handshake
    assert "'${eventsKeyName}=${eventsWebhookKey}'" in MAIN  # the app accepts that key too


def test_the_trigger_destination_names_the_event_grid_trigger() -> None:
    functions = registered()
    name = re.search(r"functionName: '(\w+)'", MAIN)
    assert name is not None
    assert functions[name.group(1)]["type"] == "eventGridTrigger"
    assert "endpointType: 'AzureFunction'" in SUBSCRIPTIONS
    assert "endpointType: 'WebHook'" in SUBSCRIPTIONS
    assert (
        "var destination = eventDelivery == 'webhook' ? webhookDestination : functionDestination"
        in SUBSCRIPTIONS
    )


def test_batch_limits_match_what_event_grid_and_the_webhook_accept() -> None:
    from functions.http import MAX_BODY_BYTES
    from shared.envelope import MAX_BATCH_EVENTS

    size = re.search(r"@maxValue\((\d+)\)\nparam eventPreferredBatchSizeInKilobytes", MAIN)
    count = re.search(r"@maxValue\((\d+)\)\nparam eventMaxEventsPerBatch", MAIN)
    assert size is not None and int(size.group(1)) * 1024 == MAX_BODY_BYTES
    assert count is not None and int(count.group(1)) == MAX_BATCH_EVENTS
