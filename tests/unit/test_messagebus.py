"""Follow-up work through the bus: a handler records it, the bus runs it after the handler,
depth first and in order; a guard takes the errors of the work it guards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from composition.bootstrap import bootstrap
from shared.errors import ConcurrencyError, PermanentError, TransientError
from shared.messagebus import Handler, MessageBus, Services
from shared.messages import Command, DriftSignalled, Event, Reconcile, StartRetraining
from tests.fakes import make_world


@dataclass(frozen=True, slots=True)
class Step(Command):
    name: str
    event_key: str = ""


def bus_with(handler: Handler) -> tuple[MessageBus, list[str]]:
    ran: list[str] = []

    def record(msg: Step, svc: Services) -> None:
        ran.append(msg.name)
        handler(msg, svc)

    return MessageBus(make_world().services, {}, {Step: record}), ran


def test_follow_ups_run_after_their_handler_depth_first_and_in_order() -> None:
    plan = {"a": ["a1", "a2"], "a1": ["a1x"], "b": []}

    def handler(msg: Step, svc: Services) -> None:
        for name in plan.get(msg.name, []):
            svc.emit(Step(name))

    bus, ran = bus_with(handler)
    plan["top"] = ["a", "b"]
    bus.handle(Step("top"))
    assert ran == ["top", "a", "a1", "a1x", "a2", "b"]
    assert [m.name for m in bus.dispatched if isinstance(m, Step)] == ran


def test_a_guard_takes_the_errors_of_the_work_it_guards_and_the_rest_runs_on() -> None:
    contained: list[tuple[str, str]] = []

    def guard(exc: Exception, msg: Step, svc: Services) -> None:
        if not isinstance(exc, TransientError):
            raise exc
        contained.append((msg.name, str(exc)))

    def handler(msg: Step, svc: Services) -> None:
        if msg.name == "top":
            svc.emit(Step("one"), guard)
            svc.emit(Step("two"), guard)
        elif msg.name == "one":
            svc.emit(Step("one-follow-up"))  # guarded too: it is work "one" leads to
        elif msg.name == "one-follow-up":
            raise TransientError("outage")

    bus, ran = bus_with(handler)
    bus.handle(Step("top"))
    assert ran == ["top", "one", "one-follow-up", "two"]
    assert contained == [("one", "outage")]


def test_inside_a_guard_a_lost_race_is_not_retried_outside_it_is() -> None:
    attempts: dict[str, int] = {}
    contained: list[str] = []

    def guard(exc: Exception, msg: Step, svc: Services) -> None:
        contained.append(type(exc).__name__)

    def handler(msg: Step, svc: Services) -> None:
        attempts[msg.name] = attempts.get(msg.name, 0) + 1
        if msg.name == "top":
            svc.emit(Step("guarded"), guard)
            if attempts["top"] == 1:
                svc.emit(Step("lost"))  # recorded by the attempt that loses: dropped
                raise ConcurrencyError("raced")
        if msg.name == "guarded":
            raise ConcurrencyError("raced")

    bus, ran = bus_with(handler)
    bus.handle(Step("top"))
    assert ran == ["top", "top", "guarded"]
    assert attempts == {"top": 2, "guarded": 1} and contained == ["ConcurrencyError"]


def test_an_error_the_guard_does_not_take_goes_on_up() -> None:
    def guard(exc: Exception, msg: Step, svc: Services) -> None:
        raise exc

    def handler(msg: Step, svc: Services) -> None:
        if msg.name == "top":
            svc.emit(Step("bad"), guard)
        else:
            raise PermanentError("no")

    bus, _ = bus_with(handler)
    with pytest.raises(PermanentError, match="no"):
        bus.handle(Step("top"))


def test_emitting_outside_a_bus_is_refused() -> None:
    with pytest.raises(RuntimeError, match="outside a message bus"):
        make_world().services.emit(Step("x"))


def test_a_drift_signal_starts_retraining_as_follow_up_work_in_the_same_invocation() -> None:
    world = make_world()
    bus = bootstrap(world.services)
    bus.handle(DriftSignalled("credit", "alert", "drift", "k1"))
    kinds = [type(m) for m in bus.dispatched]
    assert kinds == [DriftSignalled, StartRetraining]
    assert len(world.platform.submitted) == 1  # submitted before handle() returned


def test_a_reconcile_tick_is_a_tree_of_follow_up_work() -> None:
    world = make_world()
    bus = bootstrap(world.services)
    bus.handle(Reconcile())
    assert [type(m).__name__ for m in bus.dispatched] == [
        "Reconcile",
        "DrainOutbox",  # work a batch deferred past its commit (none here)
        "ReconcileWatches",
        "ReconcileCleanUps",
        "ReconcileEstimates",
        "PurgeDeliveries",
        "AnchorAudit",
    ]


def test_every_follow_up_message_has_a_handler() -> None:
    from handlers import COMMAND_HANDLERS, EVENT_HANDLERS
    from shared import messages

    follow_ups = [
        cls
        for cls in vars(messages).values()
        if isinstance(cls, type)
        and issubclass(cls, Command | Event)
        and cls not in (Command, Event, messages.CycleWork)
    ]
    missing = [
        c.__name__ for c in follow_ups if c not in COMMAND_HANDLERS and c not in EVENT_HANDLERS
    ]
    assert missing == []
