"""zaoxiang (造相): self-hosted text-to-image engine, service and studio."""

__version__ = "0.1.0"
