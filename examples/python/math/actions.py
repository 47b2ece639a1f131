"""Example actions: arithmetic on integers, floats and lists (the Python twin of examples/math)."""

from typing import Optional

from rekuest_guest import ActionError, register


@register
def add(a: int, b: int) -> int:
    """Add two numbers.

    Adds them exactly; overflow wraps around.

    Args:
        a: the first summand
        b: the second summand
    """
    # Wrap like the Rust example's i64 so both give the same results.
    return (a + b + 2**63) % 2**64 - 2**63


@register
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Fails when b is zero.

    Args:
        a: the dividend
        b: the divisor
    """
    if b == 0:
        raise ActionError("cannot divide by zero")
    return a / b


@register
def divmod(a: int, b: int) -> tuple[int, int]:
    """Divide with remainder.

    The quotient is rounded toward zero; the remainder has the sign of a.

    Args:
        a: the dividend
        b: the divisor

    Returns:
        int: the quotient
        int: the remainder
    """
    if b == 0:
        raise ActionError("cannot divide by zero")
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
    return quotient, a - quotient * b


@register
def sum(values: list[float]) -> float:
    """Sum a list of numbers.

    The sum of an empty list is 0.

    Args:
        values: the numbers to add up
    """
    total = 0.0
    for value in values:
        total += value
    return total


@register
def mean(values: list[float]) -> float:
    """Average a list of numbers.

    Fails for an empty list.

    Args:
        values: the numbers to average
    """
    if not values:
        raise ActionError("cannot average an empty list")
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


@register
def power(base: float, exponent: int = 2) -> float:
    """Raise a number to a power.

    Args:
        base: the number to raise
        exponent: the power; squares by default
    """
    return base**exponent


@register
def clamp(value: int, min: Optional[int], max: Optional[int]) -> int:
    """Clamp a number into a range.

    Either bound may be left out.

    Args:
        value: the number to clamp
        min: the lowest allowed value
        max: the highest allowed value
    """
    if min is not None and max is not None and min > max:
        raise ActionError(f"min {min} is greater than max {max}")
    if min is not None and value < min:
        value = min
    if max is not None and value > max:
        value = max
    return value
