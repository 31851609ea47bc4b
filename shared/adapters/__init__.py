"""The adapters behind the ports: Azure (ML, Monitor, Table Storage, Event Grid, the collector's
blobs) and the local ones (SQLite state and audit, the outbox).

``__all__`` names the modules the other layers use (``composition`` picks among them).
"""

__all__ = [
    "azure_ml",
    "azure_monitor",
    "collector_blob",
    "eventgrid_publisher",
    "ground_truth_blob",
    "outbox",
    "sqlite_audit",
    "sqlite_db",
    "sqlite_store",
    "table_audit",
    "table_store",
]
