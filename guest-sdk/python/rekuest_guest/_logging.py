"""The standard `logging` module as rekuest log lines: a record's level becomes the log
level (DEBUG, INFO, WARN, ERROR, CRITICAL) and its message the text, with no
``LEVEL:name:`` prefix."""

from __future__ import annotations

import logging

from . import _runtime

__all__ = ["HostHandler", "install"]


def level_for(levelno: int) -> _runtime.LogLevel:
    """The rekuest level of a `logging` level number (custom levels round down)."""
    if levelno >= logging.CRITICAL:
        return _runtime.LogLevel.CRITICAL
    if levelno >= logging.ERROR:
        return _runtime.LogLevel.ERROR
    if levelno >= logging.WARNING:
        return _runtime.LogLevel.WARN
    if levelno >= logging.INFO:
        return _runtime.LogLevel.INFO
    return _runtime.LogLevel.DEBUG


class HostHandler(logging.Handler):
    """Sends each record to the running task's log through the installed host."""

    def __init__(self) -> None:
        super().__init__()
        # The message, then the traceback for `logger.exception(...)`; nothing else.
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _runtime._host.log(level_for(record.levelno), self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the action
            self.handleError(record)


def install(level: int = logging.INFO) -> HostHandler:
    """Routes the root logger to the host at `level` (INFO: `logger.debug` stays quiet
    unless the action lowers the level); done for every component build."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, HostHandler):
            return handler
    handler = HostHandler()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
