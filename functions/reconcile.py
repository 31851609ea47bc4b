"""Timer: level-check active cycles (lost events, overdue jobs, rollout steps due)."""

from __future__ import annotations

import azure.functions as func

from functions import runtime
from shared.log_scrub import errors_scrubbed
from shared.messages import Reconcile

bp = func.Blueprint()


@bp.timer_trigger(schedule="%AUTOPILOT_RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    with errors_scrubbed():  # what escapes is logged by the host: no secret in it
        runtime.new_bus().handle(Reconcile())
