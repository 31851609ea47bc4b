"""Azure Functions entry point: build the app and register the blueprints. Nothing else."""

import azure.functions as func

from functions import alerts, api, azureml_events, console, eventgrid_webhook, reconcile
from shared import log_escape

log_escape.install()  # outside text in our log records cannot forge log lines
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
