"""Image stores: the interface and its backends (local directory; S3 later)."""
