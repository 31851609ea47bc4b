"""The sub-commands of the ``autopilot`` CLI, one module per group (``audit``, ``cycles``,
``policy``); ``autopilot.cli`` builds the parser from them and runs it."""
