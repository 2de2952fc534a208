"""Logging through structlog, to stderr, with secrets redacted on the way out.

keytrail never passes a key or a password to a log call; :func:`redact_secrets` is the
second line of defence, for keytrail and for the host application's own log calls.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "SENSITIVE_FIELDS", "configure_logging", "ensure_logging", "redact_secrets"]

REDACTED = "[redacted]"
SENSITIVE_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "ciphertext",
        "key",
        "magento-api-key",
        "magento_api_key",
        "new_password",
        "passphrase",
        "password",
        "plaintext",
        "secret",
        "secret_key",
        "token",
    }
)
# keytrail's own keys (kt_ and 43 url-safe characters), its HTTP tokens (ktt_ and 43), and Fernet tokens.
_SECRET_SHAPES = re.compile(r"ktt?_[A-Za-z0-9_\-]{43}|gAAAAA[A-Za-z0-9_\-=]{40,}")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_SHAPES.sub(REDACTED, value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SENSITIVE_FIELDS else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return (
            [_scrub(v) for v in value] if isinstance(value, (set, frozenset)) else type(value)(_scrub(v) for v in value)
        )
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
        return _SECRET_SHAPES.sub(REDACTED, value)
    # Any other object (an exception, a dataclass) is rendered by its repr: scrub that text
    # when it carries something key-shaped, and leave the object alone otherwise.
    text = repr(value)
    return _SECRET_SHAPES.sub(REDACTED, text) if _SECRET_SHAPES.search(text) else value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: blank sensitive fields and anything shaped like a keytrail key."""
    for name in list(event_dict):
        if name.lower() in SENSITIVE_FIELDS:
            event_dict[name] = REDACTED
        else:
            event_dict[name] = _scrub(event_dict[name])
    return event_dict


class _Stderr:
    """Looks up ``sys.stderr`` at each write, so captured or replaced streams are honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, level: str | None = None, json: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog for keytrail: redaction, UTC timestamps, JSON unless stderr is a terminal.

    ``level`` defaults to ``KEYTRAIL_LOG_LEVEL`` or ``info``.
    """
    name = (level or os.environ.get("KEYTRAIL_LOG_LEVEL") or "info").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    out: Any = stream or _Stderr()
    if json is None:
        json = not (stream or sys.stderr).isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks become text first, so the redaction sees them too.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def ensure_logging() -> None:
    """Give keytrail's logs a safe default (stderr, redacted) unless the application configured structlog."""
    if not structlog.is_configured():
        configure_logging()
