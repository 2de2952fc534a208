"""keytrail's logs: silent until the host configures logging, with secrets redacted on the way out.

A library does not decide where its logs go. keytrail's modules log through :func:`get_logger`,
whose loggers run keytrail's own processors (tracebacks to text, then :func:`redact_secrets`)
and then hand the event to whatever the host set up:

- a host that configured structlog gets keytrail's events through its own processors;
- otherwise they go to the standard library's ``logging`` under the ``keytrail`` logger names,
  as one JSON message each, where a ``NullHandler`` keeps them quiet until the host adds a
  handler (``logging.basicConfig(level="INFO")`` shows the transitions).

keytrail never calls ``structlog.configure``, except in :func:`configure_logging`, which only
applications call (the ``keytrail`` command does, for its own stderr). keytrail never passes a
key or a password to a log call; the redaction is the second line of defence.
"""

from __future__ import annotations

import json as _json
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "SENSITIVE_FIELDS", "configure_logging", "get_logger", "redact_secrets"]

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


# Run before anything the host configured, so no processor of the host's sees a secret.
_OWN_PROCESSORS: list[Any] = [structlog.processors.format_exc_info, redact_secrets]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# The standard library's advice for libraries: a NullHandler, so that without the host's handlers
# nothing is printed (not even logging's last-resort warnings on stderr).
logging.getLogger("keytrail").addHandler(logging.NullHandler())


class KeytrailLogger:
    """A structlog-style logger (``log.info("event", key=value)``) that redacts, then defers to the host."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)

    def _log(self, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            # The host's structlog: its logger factory, wrapper and processors, after keytrail's own.
            processors = [*_OWN_PROCESSORS, *structlog.get_config()["processors"]]
            getattr(structlog.wrap_logger(None, processors=processors), method)(event, **fields)
            return
        level = _LEVELS[method]
        if not self._stdlib.isEnabledFor(level):
            return
        event_dict: MutableMapping[str, Any] = {"event": event, **fields}
        for processor in _OWN_PROCESSORS:
            event_dict = processor(None, method, event_dict)
        self._stdlib.log(level, "%s", _json.dumps(dict(event_dict), default=str, ensure_ascii=False))

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the traceback of the exception being handled (rendered, then redacted)."""
        self._log("error", event, {"exc_info": True, **fields})


def get_logger(name: str) -> KeytrailLogger:
    """keytrail's logger for ``name`` (a ``keytrail.*`` name): quiet until the host configures logging."""
    return KeytrailLogger(name)
