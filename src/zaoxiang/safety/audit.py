"""JSON-lines audit log: who asked for what, and what the safety layer decided.

One record per line (UTF-8, Chinese kept readable). Rotation by size with N kept files
(``audit.jsonl.1`` is the newest old file) is the standard library's ``RotatingFileHandler``,
which also serialises writers with its own lock, so the log is safe to share between threads.
The handler is used directly rather than through ``logging.getLogger`` so that nothing is
registered in the process-wide logging tree and two logs never share state.
"""

from __future__ import annotations

import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zaoxiang.paths import default_data_dir
from zaoxiang.safety.settings import AuditSettings


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    key_id: str | None = None  # the API key's id (never the key itself)
    request_hash: str | None = None
    prompt: str
    negative_prompt: str | None = None
    # "allowed", "prompt_blocked", "image_blocked", "image_blurred", "image_flagged", ...
    decision: str
    category: str | None = None
    matched_term: str | None = None
    image_scores: list[float] | None = None
    extra: dict[str, Any] | None = None


class AuditLog:
    def __init__(self, settings: AuditSettings) -> None:
        self.path = Path(settings.path) if settings.path is not None else default_data_dir() / "audit" / "audit.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=settings.max_bytes, backupCount=settings.backup_count, encoding="utf-8", delay=True
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, record: AuditRecord) -> None:
        line = record.model_dump_json(exclude_none=True)
        log_record = logging.LogRecord("zaoxiang.audit", logging.INFO, __file__, 0, line, None, None)
        self._handler.handle(log_record)  # takes the handler lock: rollover + write are atomic

    def close(self) -> None:
        self._handler.close()
