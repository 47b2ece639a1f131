"""The component's exports: the WIT `actions` interface over the registered actions.

Only imported inside a component build (it needs the `wit_world` bindings componentize-py
generates); the build's entry module imports the action module, then this.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.actions import RunError_Critical, RunError_Failed
from wit_world.imports import host as _wit

from . import _runtime

__all__ = ["Actions", "check"]


class WitHost(_runtime.Host):
    """The host as the component's WIT imports reach it."""

    _LEVELS = {
        _runtime.LogLevel.DEBUG: _wit.LogLevel.DEBUG,
        _runtime.LogLevel.INFO: _wit.LogLevel.INFO,
        _runtime.LogLevel.WARN: _wit.LogLevel.WARN,
        _runtime.LogLevel.ERROR: _wit.LogLevel.ERROR,
        _runtime.LogLevel.CRITICAL: _wit.LogLevel.CRITICAL,
    }

    def log(self, level, message):
        _wit.log(self._LEVELS[level], message)

    def progress(self, percent, message):
        _wit.progress(percent, message)

    def yield_returns(self, returns_json):
        _wit.yield_returns(returns_json)

    def is_cancelled(self):
        return _wit.is_cancelled()

    def task_token(self):
        return _wit.task_token()


_description = None


def check():
    """Checks the registered actions and fixes the description (at build time)."""
    global _description
    if not _runtime.actions():
        raise _runtime.DefinitionError(
            "the action module registers no actions; decorate functions with @register"
        )
    _description = _runtime.describe()
    _runtime.set_host(WitHost())


class Actions(exports.Actions):
    """The WIT `actions` export."""

    def describe(self) -> str:
        return _description if _description is not None else _runtime.describe()

    def run(self, key: str, args_json: str) -> None:
        error = _runtime.run(key, args_json)
        if error is None:
            return
        kind, message = error
        if kind == "failed":
            raise Err(RunError_Failed(message))
        raise Err(RunError_Critical(message))
