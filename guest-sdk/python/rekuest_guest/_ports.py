"""Ports: how Python types describe themselves to rekuest and cross the wire as JSON."""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import json
import math
import types
import typing
from typing import Any

from . import _docs

__all__ = [
    "DefinitionError",
    "Port",
    "PortError",
    "describe_value",
    "model",
    "port_for",
    "structure",
]

INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOL = "BOOL"
LIST = "LIST"
DICT = "DICT"
ENUM = "ENUM"
MODEL = "MODEL"
STRUCTURE = "STRUCTURE"
MEMORY_STRUCTURE = "MEMORY_STRUCTURE"
#: The identifier of every shelved value's MEMORY_STRUCTURE port (as the Rust SDK's).
SHELVED_IDENTIFIER = "@rekuest-host/shelved"

#: Deepest nesting of ports the SDK builds (the host accepts 16).
MAX_DEPTH = 16


class DefinitionError(TypeError):
    """A signature, type or docstring that cannot become an action definition.

    Raised when `@register` runs, which for a component is at build time: the build fails
    with this message.
    """


class PortError(Exception):
    """A value that does not fit its port: `argument 'a': expected INT, got string "x"`."""

    def __init__(self, side: str, path: str, problem: str) -> None:
        super().__init__(f"{side} '{path}': {problem}")
        #: `argument` or `return`.
        self.side = side
        #: Where: `a`, `points[2].x`, `tags["red"]`.
        self.path = path
        #: What is wrong, naming the expected kind.
        self.problem = problem


def describe_value(value: Any) -> str:
    """Names a JSON value's type for error messages, with a short excerpt."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        quoted = json.dumps(value, ensure_ascii=False)
        if len(quoted) > 40:
            return f"string {quoted[:40]}…"
        return f"string {quoted}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


_MISSING: Any = object()


@dataclasses.dataclass
class Port:
    """A port, serialized in the shape of rekuest's `PortInput` (see `to_json`)."""

    kind: str
    key: str = ""
    nullable: bool = False
    description: str | None = None
    identifier: str | None = None
    children: list[Port] | None = None
    default: Any = _MISSING
    choices: list[dict[str, Any]] | None = None
    label: str | None = None
    #: The Enum, model or structure class behind an ENUM, MODEL or STRUCTURE port.
    cls: Any = None

    def keyed(self, key: str) -> Port:
        return dataclasses.replace(self, key=key)

    def to_json(self) -> dict[str, Any]:
        """The port as rekuest's `PortInput`, keys in the Rust SDK's order."""
        out: dict[str, Any] = {"key": self.key, "kind": self.kind, "nullable": self.nullable}
        if self.description is not None:
            out["description"] = self.description
        if self.identifier is not None:
            out["identifier"] = self.identifier
        if self.children is not None:
            out["children"] = [child.to_json() for child in self.children]
        if self.default is not _MISSING:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = self.choices
        if self.label is not None:
            out["label"] = self.label
        return out

    def expected(self) -> str:
        """What the port accepts, for messages: `INT`, `LIST of FLOAT`, `ENUM (A, B)`."""
        if self.kind in (LIST, DICT) and self.children:
            return f"{self.kind} of {self.children[0].expected()}"
        if self.kind == ENUM and self.choices:
            return f"ENUM ({', '.join(str(choice['value']) for choice in self.choices)})"
        if self.kind in (MODEL, STRUCTURE, MEMORY_STRUCTURE) and self.identifier:
            return f"{self.kind} {self.identifier}"
        return self.kind

    # --- decoding (wire → Python) -------------------------------------------------------

    def decode(self, value: Any, path: str, side: str = "argument") -> Any:
        """The Python value of a wire value; raises `PortError` naming `path`."""
        if value is None:
            if self.nullable:
                return None
            raise PortError(side, path, f"expected {self.expected()}, got null")
        kind = self.kind
        if kind == INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind == FLOAT:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif kind == STRING:
            if isinstance(value, str):
                return value
        elif kind == BOOL:
            if isinstance(value, bool):
                return value
        elif kind == LIST:
            if isinstance(value, list):
                child = self.children[0]  # type: ignore[index]
                return [
                    child.decode(item, f"{path}[{index}]", side)
                    for index, item in enumerate(value)
                ]
        elif kind == DICT:
            if isinstance(value, dict):
                child = self.children[0]  # type: ignore[index]
                return {
                    key: child.decode(item, f"{path}[{json.dumps(key, ensure_ascii=False)}]", side)
                    for key, item in value.items()
                }
        elif kind == ENUM:
            if isinstance(value, str) and value in self.cls.__members__:
                return self.cls[value]
        elif kind == MODEL:
            if isinstance(value, dict):
                fields = {}
                for child in self.children or []:
                    item = value.get(child.key)
                    if item is None and child.default is not _MISSING:
                        continue  # the dataclass default applies
                    if item is None and not child.nullable:
                        raise PortError(
                            side, f"{path}.{child.key}", f"missing; expected {child.expected()}"
                        )
                    fields[child.key] = child.decode(item, f"{path}.{child.key}", side)
                return self.cls(**fields)
        elif kind == MEMORY_STRUCTURE:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                from . import _runtime

                drawer = str(value)
                try:
                    kept = json.loads(_runtime._host.unshelve(drawer))
                except _runtime.KeepError as error:
                    raise PortError(side, path, str(error)) from None
                except ValueError as error:
                    raise PortError(side, path, f"drawer {drawer!r} holds no JSON: {error}") from None
                return Shelved(self.cls.decode(kept, path, side))
        elif kind == STRUCTURE:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                reference = str(value)
                try:
                    return self.cls.expand(reference)
                except (ValueError, LookupError, _action_error()) as error:
                    raise PortError(
                        side,
                        path,
                        f"cannot expand STRUCTURE {self.identifier} from "
                        f"{json.dumps(reference, ensure_ascii=False)}: {error}",
                    ) from None
        raise PortError(side, path, f"expected {self.expected()}, got {describe_value(value)}")

    # --- encoding (Python → wire) -------------------------------------------------------

    def encode(self, value: Any, path: str) -> Any:
        """The wire value of a returned Python value; raises `PortError` naming `path`."""
        side = "return"
        if value is None:
            if self.nullable:
                return None
            raise PortError(side, path, f"expected {self.expected()}, got None")
        kind = self.kind
        if kind == INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return int(value)
        elif kind == FLOAT:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
                if math.isfinite(number):
                    return number
                raise PortError(side, path, f"FLOAT {number!r} cannot be sent as JSON")
        elif kind == STRING:
            if isinstance(value, str):
                return str(value)
        elif kind == BOOL:
            if isinstance(value, bool):
                return value
        elif kind == LIST:
            if isinstance(value, (list, tuple)):
                child = self.children[0]  # type: ignore[index]
                return [child.encode(item, f"{path}[{index}]") for index, item in enumerate(value)]
        elif kind == DICT:
            if isinstance(value, collections.abc.Mapping):
                child = self.children[0]  # type: ignore[index]
                out = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise PortError(side, path, f"DICT keys must be str, got {key!r}")
                    out[key] = child.encode(item, f"{path}[{json.dumps(key, ensure_ascii=False)}]")
                return out
        elif kind == ENUM:
            if isinstance(value, self.cls):
                return value.name
        elif kind == MODEL:
            if isinstance(value, self.cls):
                return {
                    child.key: child.encode(getattr(value, child.key), f"{path}.{child.key}")
                    for child in self.children or []
                }
        elif kind == MEMORY_STRUCTURE:
            from . import _runtime

            inner = value.value if isinstance(value, Shelved) else value
            wire = self.cls.encode(inner, path)
            try:
                return _runtime._host.shelve(
                    SHELVED_IDENTIFIER, json.dumps(wire, separators=(",", ":"), allow_nan=False)
                )
            except _runtime.KeepError as error:
                raise PortError(side, path, str(error)) from None
        elif kind == STRUCTURE:
            if isinstance(value, self.cls):
                reference = value.shrink()
                if not isinstance(reference, str):
                    raise PortError(
                        side, path, f"shrink() must return a str, got {describe_value(reference)}"
                    )
                return reference
        raise PortError(side, path, f"expected {self.expected()}, got {_python_value(value)}")


def _python_value(value: Any) -> str:
    """Names a returned Python value for error messages."""
    if isinstance(value, (str, int, float, bool, list, dict)):
        return describe_value(value)
    return f"a {type(value).__qualname__}"


T = typing.TypeVar("T")


class Shelved(typing.Generic[T]):
    """A value that stays on the agent (a MEMORY_STRUCTURE): returned, the host keeps it in a
    drawer and the caller gets a reference; taken as an arg (``numbers: Shelved[list[int]]``),
    the reference comes back as the value (``numbers.value``). A reference from another agent,
    or to a collected drawer, fails the task naming the drawer."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shelved) and other.value == self.value

    def __repr__(self) -> str:
        return f"Shelved({self.value!r})"


def _action_error() -> type[Exception]:
    from ._runtime import ActionError

    return ActionError


# --- user types: Enum, model, structure -----------------------------------------------------


def structure(identifier: str) -> Any:
    """Makes a class a STRUCTURE port: an object that lives elsewhere, sent as a reference.

    The class needs `shrink(self) -> str` (the reference that stands for the object) and a
    classmethod `expand(cls, reference: str)` (the object a reference stands for; raise
    `ValueError`, `LookupError` or `ActionError` when there is none, which fails the task
    naming the port)::

        @structure(identifier="@mikro/image")
        class Image:
            def __init__(self, id: int) -> None:
                self.id = id

            def shrink(self) -> str:
                return f"image:{self.id}"

            @classmethod
            def expand(cls, reference: str) -> "Image":
                return cls(int(reference.removeprefix("image:")))

    On the wire a structure travels in the official client's envelope,
    `{"__identifier": "@mikro/image", "object": "image:42"}`; the host opens it before the
    action runs and wraps returned references in it, so the class only handles references.
    """
    if not isinstance(identifier, str) or not identifier:
        raise DefinitionError("@structure needs an identifier, e.g. @structure(identifier='@mikro/image')")

    def decorate(cls: Any) -> Any:
        for method in ("shrink", "expand"):
            if not callable(getattr(cls, method, None)):
                raise DefinitionError(
                    f"structure {cls.__qualname__} needs a {method}() method "
                    "(shrink(self) -> str and a classmethod expand(cls, reference: str))"
                )
        cls.__rekuest_structure__ = identifier
        return cls

    return decorate


def model(cls: Any) -> Any:
    """Makes a class a MODEL port: a JSON object with one port per field.

    The class becomes a dataclass (if it is not one yet); its fields' type hints give the
    child ports, its docstring the description (an `Attributes:` section describes the
    fields). Plain dataclasses are models too.
    """
    doc = cls.__dict__.get("__doc__")
    if not dataclasses.is_dataclass(cls):
        cls = dataclasses.dataclass(cls)
    cls.__rekuest_model_doc__ = doc
    return cls


def state(key: str) -> Any:
    """Makes a model class an agent state kept under `key` (``@state("counter")``): declare it
    on the actions using it (``@register(states=[Counter])``), read it with
    `Context.state(Counter)` and replace it with `Context.set_state(value)`."""

    def decorate(cls: Any) -> Any:
        cls = model(cls)
        cls.__rekuest_state__ = key
        return cls

    return decorate


def _class_doc(cls: Any) -> str | None:
    if "__rekuest_model_doc__" in cls.__dict__:
        return cls.__rekuest_model_doc__
    doc = cls.__dict__.get("__doc__")
    if doc and dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(") and "\n" not in doc:
        return None  # the signature dataclasses puts there, not a docstring
    return doc


def _enum_port(cls: Any) -> Port:
    docs = _docs.parse(_class_doc(cls))
    members = list(cls.__members__)
    if not members:
        raise DefinitionError(f"Enum {cls.__qualname__} has no members")
    choices = []
    for name in members:
        choice: dict[str, Any] = {"value": name, "label": name}
        if name in docs.params:
            choice["description"] = docs.params[name]
        choices.append(choice)
    return Port(
        ENUM,
        description=docs.description,
        identifier=cls.__name__,
        choices=choices,
        cls=cls,
    )


def _model_port(cls: Any, depth: int, seen: tuple[Any, ...]) -> Port:
    if cls in seen:
        raise DefinitionError(f"model {cls.__qualname__} contains itself; models cannot be recursive")
    docs = _docs.parse(_class_doc(cls))
    try:
        hints = typing.get_type_hints(cls)
    except Exception as error:  # noqa: BLE001 - any failure to resolve a hint
        raise DefinitionError(f"the type hints of model {cls.__qualname__} cannot be resolved: {error}") from None
    children = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        child = port_for(hints[field.name], f"field {field.name} of {cls.__qualname__}", depth + 1, seen + (cls,))
        child = child.keyed(field.name)
        if field.name in docs.params:
            child.description = docs.params[field.name]
        if field.default is not dataclasses.MISSING:
            child.default = _json_default(field.default, f"field {field.name} of {cls.__qualname__}")
            child.nullable = True
        elif field.default_factory is not dataclasses.MISSING:
            child.nullable = True
            child.default = _json_default(field.default_factory(), f"field {field.name} of {cls.__qualname__}")
        children.append(child)
    if not children:
        raise DefinitionError(f"model {cls.__qualname__} has no fields")
    return Port(MODEL, description=docs.description, identifier=cls.__name__, children=children, cls=cls)


def _json_default(value: Any, where: str) -> Any:
    """A parameter default as the JSON the definition carries."""
    if isinstance(value, enum.Enum):
        return value.name
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise DefinitionError(
            f"the default of {where} ({value!r}) cannot be sent as JSON; "
            "use None as the default and fill it in inside the function"
        ) from None
    return json.loads(text)


_UNION_ORIGINS = (typing.Union, types.UnionType)
_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)

SUPPORTED = (
    "int, float, str, bool, list[T], dict[str, T], Optional[T], Enum subclasses, "
    "@model classes (dataclasses) and @structure classes"
)


def port_for(hint: Any, where: str, depth: int = 0, seen: tuple[Any, ...] = ()) -> Port:
    """The port of a type hint (without key); `where` names it in errors."""
    if depth > MAX_DEPTH:
        raise DefinitionError(f"{where} nests deeper than {MAX_DEPTH} levels")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return port_for(args[0], where, depth, seen)
    if origin in _UNION_ORIGINS:
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1 and len(present) < len(args):
            port = port_for(present[0], where, depth, seen)
            port.nullable = True
            return port
        raise DefinitionError(
            f"{where} is a union ({hint!r}); only Optional[T] (T | None) unions are supported"
        )
    if origin is Shelved:
        if len(args) != 1:
            raise DefinitionError(f"{where}: say what is shelved, e.g. Shelved[list[int]]")
        inner = port_for(args[0], where, depth + 1, seen)
        return Port(MEMORY_STRUCTURE, identifier=SHELVED_IDENTIFIER, cls=inner)
    if hint is bool:
        return Port(BOOL)
    if hint is int:
        return Port(INT)
    if hint is float:
        return Port(FLOAT)
    if hint is str:
        return Port(STRING)
    if origin in _LIST_ORIGINS or hint in (list, typing.List):
        if len(args) != 1:
            raise DefinitionError(f"{where}: say what the list holds, e.g. list[int]")
        return Port(LIST, children=[port_for(args[0], where, depth + 1, seen).keyed("...")])
    if origin in _DICT_ORIGINS or hint in (dict, typing.Dict):
        if len(args) != 2:
            raise DefinitionError(f"{where}: say what the dict holds, e.g. dict[str, int]")
        if args[0] is not str:
            raise DefinitionError(f"{where}: DICT keys must be str, not {args[0]!r}")
        return Port(DICT, children=[port_for(args[1], where, depth + 1, seen).keyed("...")])
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return _enum_port(hint)
        identifier = getattr(hint, "__rekuest_structure__", None)
        if identifier is not None:
            return Port(STRUCTURE, identifier=identifier, cls=hint)
        if dataclasses.is_dataclass(hint):
            return _model_port(hint, depth, seen)
    if hint is type(None) or hint is None:
        raise DefinitionError(f"{where} is None; a port needs a type ({SUPPORTED})")
    raise DefinitionError(f"{where} has the type {_type_name(hint)}, which cannot be a port; ports are {SUPPORTED}")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint)
