"""Job queues: the interface and its backends (SQLite embedded; Redis later)."""
