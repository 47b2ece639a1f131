"""Example actions: generators, which yield their returns item by item (the Python twin of
examples/generator)."""

import time
from typing import Iterator

from rekuest_guest import ActionError, Context, register


@register
def count(n: int, ctx: Context) -> Iterator[int]:
    """Count from 1 to n.

    Yields each number as it is reached, reporting progress and logging each step.

    Args:
        n: the number to count to
    """
    for i in range(1, n + 1):
        ctx.progress(i * 100 // n, f"{i} of {n}")
        ctx.info(f"counted {i}")
        yield i


@register
def fibonacci(n: int) -> Iterator[int]:
    """The Fibonacci numbers.

    Yields the first n numbers of the sequence 0, 1, 1, 2, 3, 5, ...; fails once the next one
    does not fit in 64 bits (after 94 numbers).

    Args:
        n: how many numbers to yield
    """
    current, following = 0, 1
    for index in range(n):
        if current >= 2**64:
            raise ActionError(f"Fibonacci number {index} does not fit in 64 bits")
        yield current
        current, following = following, current + following


@register
def ticks(n: int, seconds: float = 1.0) -> Iterator[int]:
    """Yield a number every so often.

    Sleeps before each item, so that a caller can watch, pause or cancel it.

    Args:
        n: how many numbers to yield
        seconds: how long to wait before each
    """
    if seconds < 0:
        raise ActionError(f"seconds: cannot sleep {seconds} seconds")
    for i in range(1, n + 1):
        time.sleep(seconds)
        yield i


@register
def until_cancelled(ctx: Context, seconds: float = 0.05) -> Iterator[int]:
    """Yield a number every so often until the caller cancels.

    Sleeps before each item; once cancelled it stops and logs that it cleaned up.

    Args:
        seconds: how long to wait before each
    """
    count = 0
    try:
        while True:
            time.sleep(seconds)
            count += 1
            yield count
    finally:
        if ctx.is_cancelled():
            ctx.log(f"cancelled after {count} items: cleaned up", "INFO")


@register
def enumerate_words(text: str) -> Iterator[tuple[int, str]]:
    """The words of a text with their positions.

    Args:
        text: the text to split

    Yields:
        int: the position of the word, from 0
        str: the word
    """
    yield from enumerate(text.split())
