"""A rollout driven by the real bus against AzureMLPlatform over the real azure-ai-ml SDK.

Azure takes minutes to provision a deployment or apply a traffic change; Event Grid waits
about 30 s for an answer. The fake keeps those operations running for as long as the test
says, and every invocation must answer within its budget while the cycle still completes on
later reconcile ticks. The live deployment is named ``Blue``: the SDK lower-cases it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_azureml
from shared.adapters.azure_ml import AzureMLPlatform
from shared.budget import INVOCATION_BUDGET_S, invocation_budget
from shared.envelope import envelope_from_dict
from shared.messagebus import Services, Settings
from shared.messages import Reconcile
from shared.model import Cycle, CycleState, HealthSample
from tests import payloads
from tests.azure.fake_aml import FakeAzureML
from tests.azure.fake_arm import FakeAzure, FakeCredential
from tests.fakes import FakeAudit, FakeClock, FakeMetrics, FakePublisher, FakeStore, make_policy

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

HEALTHY = HealthSample(requests=500, errors=1, latency_p95_ms=40.0)
NEW = "credit-v2"  # shared.lifecycle.deployment_name_for("credit", "2")


@pytest.fixture
def aml(fake: FakeAzure) -> Iterator[FakeAzureML]:
    aml = FakeAzureML(fake)
    aml.add_endpoint("credit-ep", {"Blue": 100})  # set up by hand: the SDK never saw it
    aml.add_deployment("credit-ep", "Blue", aml.model_id("credit", "1"))
    aml.add_model_version("credit", "1", {"autopilot_champion": "true"})
    aml.add_model_version("credit", "2", {"autopilot_cycle": "c1"})
    yield aml
    aml.finish_operations()  # the SDK's background pollers of held operations end


@pytest.fixture
def services(aml: FakeAzureML, fake: FakeAzure, credential: FakeCredential) -> Services:
    platform = AzureMLPlatform(
        aml.subscription,
        aml.resource_group,
        aml.workspace,
        credential=credential,
        transport=fake.transport(),
    )
    clock = FakeClock()
    store = FakeStore()
    cycle = Cycle(
        id="c1",
        model="credit",
        state=CycleState.REGISTERED,
        created_at=clock.now(),
        updated_at=clock.now(),
        candidate_version="2",
    )
    assert store.create_cycle(cycle) is None
    return Services(
        store=store,
        audit=FakeAudit(),
        platform=platform,
        metrics=FakeMetrics(samples={NEW: HEALTHY, "blue": HEALTHY}),
        publisher=FakePublisher(),
        policy=make_policy(),
        clock=clock,
        settings=Settings(),
    )


def registered(services: Services) -> float:
    """Deliver the ModelRegistered event as Event Grid would; the seconds the invocation took."""
    payload = payloads.model_registered("credit", "2", {"autopilot_cycle": "c1"})
    with invocation_budget() as budget:
        assert deliver_azureml(bootstrap(services), envelope_from_dict(payload)) == "processed"
    return budget.spent()


def tick(services: Services, seconds: float = 301) -> float:
    """One reconcile tick after ``seconds``; the seconds the invocation took."""
    assert isinstance(services.clock, FakeClock)
    services.clock.advance(seconds)
    with invocation_budget() as budget:
        bootstrap(services).handle(Reconcile())
    return budget.spent()


def cycle(services: Services) -> Cycle:
    found = services.store.get_cycle("c1")
    assert found is not None
    return found


def rollout_json(services: Services) -> dict[str, Any]:
    """The cycle's rollout state as it is stored (JSON)."""
    ro = cycle(services).rollout
    return ro.to_json() if ro is not None else {}


def test_invocations_answer_in_budget_while_azure_works_and_the_rollout_completes(
    services: Services, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.hold_operations = True  # provisioning outlasts every invocation
    spent = [registered(services)]
    ro = rollout_json(services)
    assert cycle(services).state is CycleState.ROLLING_OUT
    assert ro["in_progress"] == f"deployment {NEW}"
    assert ro["previous"] == "blue"  # the SDK's name for the "Blue" deployment
    assert aml.running_operations() == 1

    spent.append(tick(services, 60))  # still provisioning: checked, not created again
    assert rollout_json(services)["in_progress"] == f"deployment {NEW}"
    assert len(fake.calls("PUT", "/deployments/")) == 1

    aml.finish_operations()  # the deployment is ready; the first traffic change is slow too
    aml.hold_operations = True
    spent.append(tick(services, 60))
    ro = rollout_json(services)
    assert ro["in_progress"].startswith("traffic change")
    assert ro.get("traffic_failures", 0) == 0  # still running is not a failed attempt
    aml.finish_operations()

    spent.append(tick(services, 60))  # the change took effect: the canary starts at 10%
    ro = rollout_json(services)
    assert (ro["phase"], ro["percent"], ro.get("in_progress")) == ("canary", 10, None)
    assert aml.endpoints["credit-ep"]["properties"]["traffic"] == {"blue": 90, NEW: 10}
    assert len(fake.calls("PUT", "/onlineEndpoints/credit-ep$")) == 1  # not sent twice

    for _ in range(3):  # 10% -> 50% -> 100% -> promoted, each after its bake time
        spent.append(tick(services))
    assert cycle(services).state is CycleState.PROMOTED
    assert aml.endpoints["credit-ep"]["properties"]["traffic"] == {NEW: 100}
    assert aml.models["credit"]["2"]["properties"]["tags"].get("autopilot_champion") == "true"

    assert max(spent) <= INVOCATION_BUDGET_S, spent
    waiting = [r.summary for r in services.audit.query(cycle="c1") if "in progress" in r.summary]
    assert waiting == [
        f"deployment {NEW} in progress; the reconciler checks it on its next tick",
        f"traffic change to {{'{NEW}': 10, 'blue': 90}} in progress; the reconciler checks "
        "it on its next tick",
    ]


def test_a_rollback_whose_traffic_change_is_still_running_is_finished_by_the_reconciler(
    services: Services, aml: FakeAzureML
) -> None:
    registered(services)
    assert rollout_json(services)["phase"] == "canary"
    assert isinstance(services.metrics, FakeMetrics)
    services.metrics.samples[NEW] = HealthSample(requests=500, errors=200, latency_p95_ms=40.0)
    aml.hold_operations = True

    assert tick(services) <= INVOCATION_BUDGET_S  # breach: rollback started, not waited for
    assert cycle(services).state is CycleState.ROLLING_OUT
    assert rollout_json(services)["rolling_back"]["reason"].startswith("canary")

    services.metrics.samples[NEW] = HEALTHY  # whatever health says now, the rollback stands
    aml.finish_operations()
    tick(services, 60)
    assert cycle(services).state is CycleState.ROLLED_BACK
    assert aml.endpoints["credit-ep"]["properties"]["traffic"] == {"blue": 100}
