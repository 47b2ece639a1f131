"""Write rekuest actions as plain Python functions and compile them to a WebAssembly
component that `rekuest-host` runs in a sandbox.

::

    from rekuest_guest import ActionError, register

    @register
    def add(a: int, b: int) -> int:
        \"\"\"Add two numbers.

        Args:
            a: the first summand
            b: the second summand
        \"\"\"
        return a + b

    @register
    def divide(a: float, b: float) -> float:
        \"\"\"Divide a by b.\"\"\"
        if b == 0:
            raise ActionError("cannot divide by zero")
        return a / b

Build the module into a component with `guest-sdk/python/build.sh path/to/actions.py`
(componentize-py). The functions stay ordinary Python functions, callable from your own
tests; `describe()` and `run()` work on a normal Python too.

Definitions
-----------

`@register` derives the rekuest `DefinitionInput` of a function, in the same shape as the
Rust SDK (`rekuest_guest` crate) for the same signature:

* ``key``: the function name; ``version``: ``"1"`` (``@register(version="2")``);
* ``name``: the function name in Title Case, ``add_numbers`` → ``Add Numbers``
  (``@register(name="Add them")``);
* ``description``: the docstring's summary (first paragraph, on one line) and body, joined by
  a blank line, without its sections (Args, Returns, Raises, Examples, ...); ``"No
  Description"`` without a docstring (``@register(description=...)`` overrides);
* ``kind``: ``GENERATOR`` for a generator function (or one annotated ``-> Iterator[T]``),
  otherwise ``FUNCTION``; ``stateful``: false; ``collections``: empty;
* ``args``: one port per parameter, keyed by its name, described by the docstring's
  ``Args:`` entry (Google), ``Parameters`` entry (NumPy) or ``:param a:`` field (reST). A
  parameter with a default is nullable and carries the default (a ``None`` default is
  nullable without a default), as in the Python agent; a missing or null arg takes it;
* ``returns``: keyed ``return0``, ``return1``, ...: one port for a plain return type, one
  per element of a ``tuple[A, B]``, none for ``None`` (or no annotation); for a generator
  the item type's. Descriptions come from ``Returns:`` (``Yields:`` for generators), one
  entry per return.

A parameter annotated `Context` is not a port: it gives logs, progress and cancellation.
The module-level `log`, `progress` and `is_cancelled` do the same.
Inside a component the standard `logging` module reaches the task's log too: the root
logger sends each record at its own level (``logger.info`` → INFO, ``warning`` → WARN,
``error`` → ERROR, ``critical`` → CRITICAL, ``debug`` → DEBUG once the level is lowered from
the default INFO), the message alone, with the traceback for ``logger.exception``.

Ports
-----

=================================  ================================================
Python type                         port
=================================  ================================================
``int``                             ``INT``
``float``                           ``FLOAT`` (JSON integers accepted)
``str``                             ``STRING``
``bool``                            ``BOOL``
``list[T]``                         ``LIST``, one child ``...``
``dict[str, T]``                    ``DICT``, one child ``...``
``Optional[T]``, ``T | None``       ``T``'s port, ``nullable: true``
``enum.Enum`` subclass              ``ENUM``, ``identifier`` = class name, choices = member names
``@model`` class / dataclass        ``MODEL``, ``identifier`` = class name, one child per field
``@structure(identifier=...)``      ``STRUCTURE`` with that identifier
=================================  ================================================

An enum's wire value is the member name (``Case.Upper`` ↔ ``"Upper"``); a model's is a JSON
object of its fields; a structure's is its reference string (``shrink``/``expand``). The
docstring of an enum or model describes the port; its ``Attributes:`` section describes
the members or fields.

Running, errors and exceptions
------------------------------

``run`` parses the args JSON once and decodes each arg into its parameter; unknown keys are
ignored. A missing non-nullable arg or a value of the wrong kind fails the task (FAILED)
with a message naming the port and the expected kind: ``argument 'points[2].x': expected
FLOAT, got string "x"``; so do invalid JSON, an unknown action key and a structure
reference that does not expand. Returns leave through the host's ``yield-returns`` as a
JSON object keyed ``return0``, ...: once for a function (``{}`` without return ports), once
per item for a generator, which stops early (and is closed, so its ``finally`` runs) when
the caller cancels, checked after each item. A cancel is cooperative first: the action keeps
running for its cancel grace (3 s by default, ``cancel_grace`` in the host's config), in
which `is_cancelled` is true; one still running then is stopped where it is. An interrupt
stops it at once. A returned value that does not fit its port fails the task.

Calling other actions
---------------------

Declare what an action calls with ``@register(dependencies=["add"])`` and call it through
the slot: ``call("add", a=1, b=2)`` (or ``ctx.call(...)``) blocks until the child answers
and gives its returns (one value, a tuple for several); ``iterate("count", n=3)`` yields a
generator's items as they come. A child that fails raises `CallError` (``kind``:
``refused``, ``failed``, ``critical``, ``cancelled``), which the action may catch.
``action_hash(...)`` and ``agent_interface(agent, key)`` name a target without a slot.

Raising `ActionError` fails the task (FAILED) with its message: a failure meant for the
caller, like a Rust ``Err``. Any other exception is a bug, like a Rust panic: the task
ends CRITICAL with the traceback's last line (``ZeroDivisionError: division by zero``) and
the whole traceback is sent as a CRITICAL log line.
"""

from ._ports import DefinitionError, PortError, Shelved, model, state, structure
from ._runtime import (
    ActionError,
    CallError,
    Child,
    Context,
    Host,
    KeepError,
    LogLevel,
    action_hash,
    actions,
    agent_interface,
    call,
    dependency,
    describe,
    is_cancelled,
    iterate,
    log,
    progress,
    register,
    run,
    set_host,
    task_token,
)

__all__ = [
    "ActionError",
    "CallError",
    "Child",
    "Context",
    "DefinitionError",
    "Host",
    "KeepError",
    "LogLevel",
    "Shelved",
    "PortError",
    "action_hash",
    "actions",
    "agent_interface",
    "call",
    "dependency",
    "describe",
    "is_cancelled",
    "iterate",
    "log",
    "model",
    "progress",
    "register",
    "run",
    "set_host",
    "state",
    "structure",
    "task_token",
]

__version__ = "0.1.0"
