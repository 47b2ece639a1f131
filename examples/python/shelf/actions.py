"""Example actions: a value kept on the agent (a memory shelf); the Python twin of
examples/shelf."""

from rekuest_guest import ActionError, Shelved, register


@register
def make_numbers(n: int) -> Shelved[list[int]]:
    """Make the numbers 0 to n-1 and keep them on the agent.

    The caller gets a reference (a MEMORY_STRUCTURE); pass it to `sum_numbers`.

    Args:
        n: how many numbers
    """
    if n < 0:
        raise ActionError(f"n must not be negative, got {n}")
    return Shelved(list(range(n)))


@register
def sum_numbers(numbers: Shelved[list[int]]) -> int:
    """Sum numbers kept on the agent.

    Args:
        numbers: a reference `make_numbers` returned
    """
    return sum(numbers.value)
