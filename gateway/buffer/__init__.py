"""The store-and-forward buffer between the pollers and the MQTT session.

``outbox`` is the queue the gateway uses (``DurableBuffer``: commit, send, acknowledge,
delete); ``store`` is its SQLite file (schema, opening, restoring, damage handling).
"""
