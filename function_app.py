"""Azure Functions entry point: build the app and register the blueprints. Nothing else."""

import azure.functions as func

from functions import alerts, api, azureml_events, console, eventgrid_webhook, reconcile
from shared import log_scrub

log_scrub.install()  # no log line holds a secret; outside text cannot forge one (log_escape)
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (
    azureml_events.bp,
    eventgrid_webhook.bp,
    alerts.bp,
    reconcile.bp,
    api.bp,
    console.bp,
):
    app.register_functions(blueprint)
