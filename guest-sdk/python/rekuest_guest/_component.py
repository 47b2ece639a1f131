"""The component's exports: the WIT `actions` interface over the registered actions.

Only imported inside a component build (it needs the `wit_world` bindings componentize-py
generates); the build's entry module imports the action module, then this.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.actions import RunError_Critical, RunError_Failed
from wit_world.imports import calls as _calls
from wit_world.imports import host as _wit
from wit_world.imports import keep as _keep

from . import _logging, _runtime

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

    def shelve(self, identifier, value_json):
        return _kept(lambda: _keep.shelve(identifier, value_json))

    def unshelve(self, drawer):
        return _kept(lambda: _keep.unshelve(drawer))

    def get_state(self, key):
        return _kept(lambda: _keep.get_state(key))

    def set_state(self, key, value_json):
        _kept(lambda: _keep.set_state(key, value_json))

    def call(self, target, args_json):
        kind = target[0]
        if kind == "dependency":
            wit_target = _calls.Target_Dependency(target[1])
        elif kind == "hash":
            wit_target = _calls.Target_ActionHash(target[1])
        else:
            wit_target = _calls.Target_AgentInterface(_calls.AgentInterface(target[1], target[2]))
        try:
            return WitChild(_calls.call(wit_target, args_json))
        except Err as error:
            raise _call_error(error.value) from None


def _kept(request):
    try:
        return request()
    except Err as error:
        raise _runtime.KeepError(str(error.value)) from None


class WitChild(_runtime.Child):
    """A child call as the WIT resource; closing it stops the child if it still runs."""

    def __init__(self, child):
        self._child = child

    def next(self):
        try:
            return self._child.next()
        except Err as error:
            raise _call_error(error.value) from None

    def close(self):
        if self._child is not None:
            self._child.__exit__(None, None, None)
            self._child = None


_CALL_ERROR_KINDS = {
    _calls.CallError_Refused: "refused",
    _calls.CallError_Failed: "failed",
    _calls.CallError_Critical: "critical",
    _calls.CallError_Cancelled: "cancelled",
}


def _call_error(error):
    return _runtime.CallError(_CALL_ERROR_KINDS.get(type(error), "critical"), str(error.value))


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
    _logging.install()


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
