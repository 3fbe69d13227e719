"""The HTTP API: one FastAPI app per process, built by :func:`zaoxiang.api.app.create_app`."""
