"""Example actions: an agent state and a lock; the Python twin of examples/counter."""

from rekuest_guest import Context, register, state


@state("counter")
class Counter:
    """How often `increment` ran, summed.

    Attributes:
        count: the running count
    """

    count: int


@register(states=[Counter], locks=["counter"])
def increment(by: int, ctx: Context) -> int:
    """Add to the agent's running count.

    Holds the lock `counter` while it reads and writes the state, so concurrent increments
    take turns.

    Args:
        by: how much to add

    Returns:
        The new count.
    """
    counter = ctx.state(Counter)
    counter.count += by
    ctx.set_state(counter)
    return counter.count
