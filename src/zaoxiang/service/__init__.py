"""The generation service: queue, storage, cache, worker, events, keys and limits.

Each piece sits behind a small interface so the embedded single-process backends (SQLite, local
disk, in-memory buckets) can be swapped for distributed ones (Redis, S3) chosen by settings.
"""
