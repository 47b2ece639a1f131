"""Example actions: composition, the twin of examples/pipeline. Each calls other actions
through a declared dependency slot; serve it with the actions it calls:
`rekuest-host dev math.wasm pipeline.wasm --assign double_sum a=1 b=2` prints 6."""

import time

from rekuest_guest import ActionError, CallError, call, iterate, register


@register(dependencies=["add"])
def double_sum(a: int, b: int) -> int:
    """Double a sum.

    Adds a and b with the `add` action, then adds the sum to itself with a second call.

    Args:
        a: the first summand
        b: the second summand
    """
    try:
        total = call("add", a=a, b=b)
        return call("add", a=total, b=total)
    except CallError as error:
        raise ActionError(str(error)) from None


@register(dependencies=["divide"])
def safe_divide(a: float, b: float) -> str:
    """Divide, and say so when it cannot.

    Calls the `divide` action and turns its failure into a sentence instead of failing.

    Args:
        a: the dividend
        b: the divisor
    """
    try:
        return f"{a} / {b} = {call('divide', a=a, b=b)}"
    except CallError as error:
        if error.kind == "failed":
            return f"{a} / {b} is undefined: {error.message}"
        return f"{a} / {b} could not be computed: {error}"


@register(dependencies=["count"])
def sum_count(n: int) -> int:
    """Sum what the `count` generator yields.

    Args:
        n: count from 1 to n
    """
    try:
        return sum(iterate("count", n=n))
    except CallError as error:
        raise ActionError(str(error)) from None


@register(dependencies=["sleep"])
def wait_for(seconds: float) -> str:
    """Wait for a child that sleeps.

    Args:
        seconds: how long the child sleeps
    """
    started = time.monotonic()
    try:
        call("sleep", seconds=seconds)
    except CallError as error:
        raise ActionError(str(error)) from None
    return f"the child slept for {time.monotonic() - started:.1f}s"


@register(dependencies=["nest"])
def nest(depth: int) -> int:
    """Call itself, deeper and deeper, until the host's call depth cap stops it.

    Args:
        depth: how deep this call is
    """
    try:
        return call("nest", depth=depth + 1)
    except CallError as error:
        raise ActionError(f"at depth {depth}: {error}") from None
