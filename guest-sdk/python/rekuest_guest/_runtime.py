"""Registration, definitions and dispatch; independent of the WIT bindings, so that it runs
(and is tested) on a normal Python as well as inside a component."""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import json
import math
import traceback
import typing
from typing import Any, Callable, Iterator

from . import _docs
from ._ports import (
    DefinitionError,
    Port,
    PortError,
    _json_default,
    describe_value,
    port_for,
)
from ._ports import MODEL as _MODEL

__all__ = [
    "Action",
    "ActionError",
    "CallError",
    "Child",
    "Context",
    "Host",
    "LogLevel",
    "action_hash",
    "actions",
    "agent_interface",
    "call",
    "dependency",
    "describe",
    "is_cancelled",
    "iterate",
    "log",
    "progress",
    "register",
    "run",
    "set_host",
    "task_token",
]


class ActionError(Exception):
    """Raise it to end the task as FAILED with its message: a failure meant for the caller.

    Any other exception is a bug in the action and ends the task as CRITICAL.
    """


class LogLevel(enum.Enum):
    """Severity of a log line."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def _level(level: LogLevel | str) -> LogLevel:
    if isinstance(level, LogLevel):
        return level
    name = str(level).upper()
    if name == "WARNING":
        name = "WARN"
    try:
        return LogLevel[name]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LogLevel.__members__)}") from None


class Host:
    """What the host offers a running action; the WIT imports inside a component.

    This default, used on a normal Python (your own tests), prints logs and progress and
    collects yields in `yields`; `set_host` installs another.
    """

    def __init__(self) -> None:
        self.yields: list[str] = []
        self.cancelled = False
        self.token: str | None = None

    def log(self, level: LogLevel, message: str) -> None:
        print(f"[{level.value}] {message}")

    def progress(self, percent: int, message: str | None) -> None:
        print(f"[progress {percent}%] {message or ''}".rstrip())

    def yield_returns(self, returns_json: str) -> None:
        self.yields.append(returns_json)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def task_token(self) -> str | None:
        return self.token

    def call(self, target: tuple[str, ...], args_json: str) -> "Child":
        raise CallError(
            "refused",
            "calls to other actions need rekuest-host: this action is not running in a component",
        )

    # What outlives a task: this default keeps it in `drawers` and `states` (for your tests);
    # inside a component the host keeps it, bounded.

    def shelve(self, identifier: str, value_json: str) -> str:
        drawers = self.__dict__.setdefault("drawers", {})
        drawer = f"drawer-{len(drawers) + 1}"
        drawers[drawer] = value_json
        return drawer

    def unshelve(self, drawer: str) -> str:
        try:
            return self.__dict__.setdefault("drawers", {})[drawer]
        except KeyError:
            raise KeepError(f"no drawer {drawer!r} here") from None

    def get_state(self, key: str) -> str:
        try:
            return self.__dict__.setdefault("states", {})[key]
        except KeyError:
            raise KeepError(f"no state {key!r} here") from None

    def set_state(self, key: str, value_json: str) -> None:
        self.__dict__.setdefault("states", {})[key] = value_json


class KeepError(Exception):
    """The host refused to keep, or has no, a shelved value or a state; the message says why."""


class Child:
    """A running child task as the host reaches it."""

    def next(self) -> str | None:
        """The next returns as JSON text; None once the child completed."""
        raise NotImplementedError

    def close(self) -> None:
        """Stops the child if it still runs."""


class CallError(Exception):
    """A call to another action gave no (more) returns: `kind` is ``refused`` (not made),
    ``failed`` or ``critical`` (how the child ended), ``cancelled`` (the child was stopped) or
    ``returns`` (its returns were not what the caller expected)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{_CALL_ERROR_PREFIX.get(kind, kind)}: {message}")
        self.kind = kind
        self.message = message


_CALL_ERROR_PREFIX = {
    "refused": "the call was refused",
    "failed": "the called action failed",
    "critical": "the called action crashed",
    "cancelled": "the called action was stopped",
    "returns": "the called action's returns do not fit",
}


def dependency(slot: str) -> tuple[str, ...]:
    """A call target: a dependency slot the action declared."""
    return ("dependency", slot)


def action_hash(hash_: str) -> tuple[str, ...]:
    """A call target: the action with this hash."""
    return ("hash", hash_)


def agent_interface(agent: str, interface: str) -> tuple[str, ...]:
    """A call target: the action `interface` on the agent `agent` (its id)."""
    return ("agent", agent, interface)


def _target(target: str | tuple[str, ...]) -> tuple[str, ...]:
    return dependency(target) if isinstance(target, str) else tuple(target)


def _unpack(returns_json: str) -> Any:
    try:
        returns = json.loads(returns_json)
    except ValueError as error:
        raise CallError("returns", str(error)) from None
    if not isinstance(returns, dict):
        raise CallError("returns", "the returns are not a JSON object")
    values = [returns[f"return{index}"] for index in range(len(returns)) if f"return{index}" in returns]
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def iterate(target: str | tuple[str, ...], /, **args: Any) -> Iterator[Any]:
    """Calls a generator (`target`: a dependency slot, or `action_hash(...)`,
    `agent_interface(...)`) with keyword args and yields its items as they come (one value, a
    tuple for several returns). Raises `CallError` if the child does not complete."""
    child = _host.call(_target(target), json.dumps(args))
    try:
        while True:
            returns = child.next()
            if returns is None:
                return
            yield _unpack(returns)
    finally:
        child.close()


def call(target: str | tuple[str, ...], /, **args: Any) -> Any:
    """Calls another action with keyword args and waits for its returns (one value, a tuple
    for several, None for none). Raises `CallError` if the child does not complete: catch it
    to handle the child's failure."""
    results = list(iterate(target, **args))
    return results[0] if results else None


_host: Host = Host()


def set_host(host: Host) -> Host:
    """Installs `host` for the running actions; returns the previous one."""
    global _host
    previous, _host = _host, host
    return previous


def log(message: object, level: LogLevel | str = LogLevel.DEBUG) -> None:
    """Sends a log line to the caller (as the Python agent's `log`: DEBUG by default)."""
    _host.log(_level(level), str(message))


def _percent(percent: float) -> int:
    if isinstance(percent, float):
        if math.isnan(percent):
            return 0
        percent = round(percent)
    return max(0, min(100, int(percent)))


def progress(percentage: float, message: str | None = None) -> None:
    """Reports progress: `percentage` is clamped to 0..100, the message is optional."""
    _host.progress(_percent(percentage), None if message is None else str(message))


def is_cancelled() -> bool:
    """Whether the caller asked to stop; a long action may check it and return within its
    cancel grace (3 s by default), after which it is stopped where it is."""
    return _host.is_cancelled()


def task_token() -> str | None:
    """The task's provenance token (rekuest's signed token naming the user, the agent and the
    task), or None. Requests to origins the host knows as Arkitekt services carry it already;
    send it as header `Rekuest-Task` to other services acting on the task's behalf."""
    return _host.task_token()


class Context:
    """Access to the host for a running action: logs, progress and cancellation.

    Take it as a parameter annotated `Context` (any name, anywhere); it is not a port. The
    module-level `log`, `progress` and `is_cancelled` do the same without a parameter.
    """

    def log(self, message: object, level: LogLevel | str = LogLevel.INFO) -> None:
        """Sends a log line (INFO unless `level` says otherwise)."""
        log(message, level)

    def debug(self, message: object) -> None:
        log(message, LogLevel.DEBUG)

    def info(self, message: object) -> None:
        log(message, LogLevel.INFO)

    def warn(self, message: object) -> None:
        log(message, LogLevel.WARN)

    warning = warn

    def error(self, message: object) -> None:
        log(message, LogLevel.ERROR)

    def critical(self, message: object) -> None:
        log(message, LogLevel.CRITICAL)

    def progress(self, percentage: float, message: str | None = None) -> None:
        progress(percentage, message)

    def is_cancelled(self) -> bool:
        return is_cancelled()

    def call(self, target: str | tuple[str, ...], /, **args: Any) -> Any:
        """Calls another action and waits for its returns (see the module-level `call`)."""
        return call(target, **args)

    def iterate(self, target: str | tuple[str, ...], /, **args: Any) -> Iterator[Any]:
        """Calls a generator and yields its items (see the module-level `iterate`)."""
        return iterate(target, **args)

    def task_token(self) -> str | None:
        return task_token()

    def state(self, cls: type[Any]) -> Any:
        """The current value of the agent state `cls` (a ``@state(key)`` model the action
        declares with ``@register(states=[cls])``). A refusal fails the task (ActionError)."""
        key = _state_key(cls, "Context.state")
        port = port_for(cls, f"state {key!r}")
        try:
            value = json.loads(_host.get_state(key))
        except KeepError as error:
            raise ActionError(str(error)) from None
        return port.decode(value, key)

    def set_state(self, value: Any) -> None:
        """Replaces the agent state `value` is of; the host streams the change to the server.
        A refusal (a value that does not fit, too large) fails the task (ActionError)."""
        key = _state_key(type(value), "Context.set_state")
        wire = port_for(type(value), f"state {key!r}").encode(value, key)
        try:
            _host.set_state(key, json.dumps(wire, separators=(",", ":"), allow_nan=False))
        except KeepError as error:
            raise ActionError(str(error)) from None


def _state_key(cls: Any, where: str) -> str:
    key = getattr(cls, "__rekuest_state__", None)
    if not isinstance(key, str):
        raise DefinitionError(f"{where}: {cls!r} is not a state; decorate it with @state(key)")
    return key


def _state_schema(cls: Any, where: str) -> dict[str, Any]:
    key = _state_key(cls, where)
    port = port_for(cls, f"state {key!r} of {where}")
    if port.kind != _MODEL:
        raise DefinitionError(f"{where}: the state {key!r} must be a model")
    return {
        "key": key,
        "name": cls.__name__,
        "ports": [child.to_json() for child in port.children or []],
    }


_ITERATOR_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Generator,
    collections.abc.Iterable,
)


@dataclasses.dataclass
class _Arg:
    name: str
    port: Port
    has_default: bool
    default: Any


@dataclasses.dataclass
class Action:
    """One registered action."""

    key: str
    function: Callable[..., Any]
    definition: dict[str, Any]
    args: list[_Arg]
    context_params: list[str]
    returns: list[Port]
    generator: bool

    def decode_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the function; a missing or null arg takes its default."""
        kwargs: dict[str, Any] = {name: Context() for name in self.context_params}
        for arg in self.args:
            value = args.get(arg.name)
            if value is None:
                if arg.has_default:
                    kwargs[arg.name] = arg.default
                    continue
                if arg.port.nullable:
                    kwargs[arg.name] = None
                    continue
                raise PortError("argument", arg.name, f"missing; expected {arg.port.expected()}")
            kwargs[arg.name] = arg.port.decode(value, arg.name)
        return kwargs

    def encode_returns(self, value: Any) -> str:
        """One set of returns as the JSON object the host expects."""
        ports = self.returns
        if not ports:
            if value is not None:
                raise PortError(
                    "return",
                    "return0",
                    f"the action declares no return ports but returned {_short(value)}; "
                    "annotate its return type",
                )
            values: tuple[Any, ...] = ()
        elif len(ports) == 1:
            values = (value,)
        else:
            if not isinstance(value, tuple) or len(value) != len(ports):
                raise PortError(
                    "return",
                    "return0",
                    f"expected a tuple of {len(ports)} values, got {_short(value)}",
                )
            values = value
        returns = {port.key: port.encode(item, port.key) for port, item in zip(ports, values)}
        return json.dumps(returns, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} values"
    return describe_value(value) if isinstance(value, (str, int, float, bool, list, dict)) else (
        f"a {type(value).__qualname__}"
    )


_actions: dict[str, Action] = {}


def actions() -> list[Action]:
    """The registered actions, in registration order."""
    return list(_actions.values())


def _is_context(hint: Any) -> bool:
    return hint is Context or (isinstance(hint, type) and issubclass(hint, Context))


def _define(
    function: Callable[..., Any],
    key: str,
    name: str | None,
    version: str,
    description: str | None,
    collections_: list[str],
    dependencies: list[Any],
    states: list[Any] = (),  # type: ignore[assignment]
    locks: list[str] = (),  # type: ignore[assignment]
) -> Action:
    where = f"action {key!r}"
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise DefinitionError(f"{where}: async functions are not supported; use a plain def")
    docs = _docs.parse(function.__doc__)
    try:
        hints = typing.get_type_hints(function)
    except Exception as error:  # noqa: BLE001 - any failure to resolve a hint
        raise DefinitionError(f"{where}: its type hints cannot be resolved: {error}") from None
    signature = inspect.signature(function)

    args: list[_Arg] = []
    context_params: list[str] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise DefinitionError(f"{where}: *args and **kwargs cannot be ports")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise DefinitionError(f"{where}: positional-only parameters cannot be ports")
        has_default = parameter.default is not parameter.empty
        hint = hints.get(parameter.name)
        if hint is None:
            if not has_default or parameter.default is None:
                raise DefinitionError(
                    f"{where}: parameter {parameter.name!r} needs a type hint"
                )
            hint = type(parameter.default)
        if _is_context(hint):
            context_params.append(parameter.name)
            continue
        port = port_for(hint, f"parameter {parameter.name!r} of {where}").keyed(parameter.name)
        if parameter.name in docs.params:
            port.description = docs.params[parameter.name]
        if has_default:
            # As the Python agent: a parameter with a default is nullable; a None default
            # is no default.
            port.nullable = True
            if parameter.default is not None:
                port.default = _json_default(
                    parameter.default, f"parameter {parameter.name!r} of {where}"
                )
                # The default must fit its own port.
                try:
                    port.decode(port.default, parameter.name)
                except PortError as error:
                    raise DefinitionError(f"{where}: the default of {error}") from None
        args.append(_Arg(parameter.name, port, has_default, parameter.default if has_default else None))

    returns_hint = hints.get("return", signature.return_annotation)
    if returns_hint is inspect.Signature.empty:
        returns_hint = None
    generator = inspect.isgeneratorfunction(function)
    origin = typing.get_origin(returns_hint)
    if origin in _ITERATOR_ORIGINS or returns_hint in _ITERATOR_ORIGINS:
        generator = True
        item_args = typing.get_args(returns_hint)
        returns_hint = item_args[0] if item_args else None
    elif generator and returns_hint is not None:
        raise DefinitionError(
            f"{where}: a generator's return type must be Iterator[T] or Generator[T, None, None], "
            f"not {returns_hint!r}"
        )
    if returns_hint is type(None):
        returns_hint = None
    if returns_hint is None:
        return_hints: tuple[Any, ...] = ()
    elif typing.get_origin(returns_hint) is tuple:
        return_hints = typing.get_args(returns_hint)
        if Ellipsis in return_hints:
            raise DefinitionError(
                f"{where}: a variable-length tuple cannot be returns; use list[T] or tuple[A, B]"
            )
    else:
        return_hints = (returns_hint,)
    described = docs.yields if generator and docs.yields else docs.returns
    returns: list[Port] = []
    for index, hint in enumerate(return_hints):
        port = port_for(hint, f"return {index} of {where}").keyed(f"return{index}")
        if index < len(described):
            port.description = described[index]
        returns.append(port)

    definition: dict[str, Any] = {
        "key": key,
        "version": version,
        "name": name if name is not None else _docs.title_case(function.__name__),
        "description": description
        if description is not None
        else (docs.description or "No Description"),
        "kind": "GENERATOR" if generator else "FUNCTION",
        "args": [arg.port.to_json() for arg in args],
        "returns": [port.to_json() for port in returns],
        "stateful": False,
        "collections": list(collections_),
    }
    if dependencies:
        definition["dependencies"] = [_dependency(item, where) for item in dependencies]
    if locks:
        if not all(isinstance(lock, str) for lock in locks):
            raise DefinitionError(f"{where}: locks are names (str), not {locks!r}")
        definition["locks"] = list(locks)
    if states:
        definition["states"] = [_state_schema(cls, where) for cls in states]
    return Action(key, function, definition, args, context_params, returns, generator)


def _dependency(item: Any, where: str) -> dict[str, Any]:
    """A dependency slot: ``"add"`` (named after the action) or
    ``{"key": ..., "action": ... | "hash": ..., "optional": ...}``."""
    if isinstance(item, str):
        return {"key": item, "action": item, "optional": False}
    if isinstance(item, dict) and set(item) <= {"key", "action", "hash", "optional"}:
        demands = [field for field in ("action", "hash") if item.get(field)]
        if len(demands) == 1 and (item.get("key") or item.get("action")):
            slot = {"key": item.get("key") or item["action"], demands[0]: item[demands[0]]}
            slot["optional"] = bool(item.get("optional", False))
            return slot
    raise DefinitionError(
        f"{where}: a dependency is an action key or "
        f"{{'key': ..., 'action': ... or 'hash': ..., 'optional': ...}}, not {item!r}"
    )


def register(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    version: str = "1",
    description: str | None = None,
    collections: list[str] | None = None,
    dependencies: list[Any] | None = None,
    states: list[Any] | None = None,
    locks: list[str] | None = None,
) -> Any:
    """Registers a plain function as an action: `@register` or `@register(name=...)`.

    The definition comes from the signature and the docstring (see the package docs); the
    function itself is returned unchanged, still callable from your own code and tests.
    `dependencies` declares the actions it calls (``["add"]``): call them with
    `call("add", a=1, b=2)`. `states` lists the agent states it uses (``@state`` models);
    `locks` the locks its tasks hold while they run (tasks sharing one take turns).
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        key = function.__name__
        if key in _actions:
            raise DefinitionError(f"an action with the key {key!r} is already registered")
        _actions[key] = _define(
            function,
            key,
            name,
            str(version),
            description,
            collections or [],
            dependencies or [],
            states or [],
            locks or [],
        )
        return function

    if function is not None:
        return decorate(function)
    return decorate


def describe() -> str:
    """The JSON array of all definitions."""
    return json.dumps([action.definition for action in _actions.values()], ensure_ascii=False)


#: How a run ended when it did not complete: ("failed" | "critical", message).
RunError = tuple[str, str]


def _crash(error: BaseException) -> RunError:
    """A bug: CRITICAL with the traceback's last line; the whole traceback is logged."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    _host.log(LogLevel.CRITICAL, "".join(lines).rstrip())
    return ("critical", traceback.format_exception_only(type(error), error)[-1].strip())


def run(key: str, args_json: str) -> RunError | None:
    """Runs the action `key` with the JSON object `args_json`; None when it completed."""
    action = _actions.get(key)
    if action is None:
        known = ", ".join(_actions)
        return ("failed", f"unknown action '{key}'; this component has: {known}")
    try:
        args = json.loads(args_json)
    except ValueError as error:
        return ("failed", f"args are not valid JSON: {error}")
    if not isinstance(args, dict):
        return ("failed", f"args must be a JSON object, got {describe_value(args)}")
    try:
        kwargs = action.decode_args(args)
    except PortError as error:
        return ("failed", str(error))
    except BaseException as error:  # noqa: BLE001 - a structure's expand() crashed
        return _crash(error)
    try:
        result = action.function(**kwargs)
        if not action.generator:
            _host.yield_returns(action.encode_returns(result))
            return None
        items: Iterator[Any] = iter(result)
        try:
            for item in items:
                _host.yield_returns(action.encode_returns(item))
                if _host.is_cancelled():
                    break
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        return None
    except (ActionError, PortError) as error:
        return ("failed", str(error))
    except BaseException as error:  # noqa: BLE001 - every other exception is a bug
        return _crash(error)
