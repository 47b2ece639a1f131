"""Example actions: text, with defaults, optional args, an enum, a dict and a model (the Python
twin of examples/text)."""

from enum import Enum
from typing import Optional

from rekuest_guest import ActionError, model, register


@register
def greet(name: str, greeting: str = "Hello", punctuation: Optional[str] = None) -> str:
    """Greet someone.

    Puts the greeting, the name and the punctuation together.

    Args:
        name: who to greet
        greeting: how to greet
        punctuation: what ends the greeting; "!" when left out
    """
    return f"{greeting}, {name}{'!' if punctuation is None else punctuation}"


class Case(Enum):
    """How to change the case of text.

    Attributes:
        Upper: ALL CAPITAL LETTERS
        Lower: all small letters
        Title: The First Letter Of Each Word Capital
    """

    Upper = "upper"
    Lower = "lower"
    Title = "title"


def _title_case(text: str) -> str:
    result = []
    start_of_word = True
    for char in text:
        result.append(char.upper() if start_of_word else char.lower())
        start_of_word = char.isspace()
    return "".join(result)


@register
def change_case(text: str, case: Case) -> str:
    """Change the case of a text.

    Args:
        text: the text to change
        case: the case to change it to
    """
    if case is Case.Upper:
        return text.upper()
    if case is Case.Lower:
        return text.lower()
    return _title_case(text)


def _words(text: str) -> list[str]:
    words = []
    for word in text.split():
        start, end = 0, len(word)
        while start < end and not word[start].isalnum():
            start += 1
        while end > start and not word[end - 1].isalnum():
            end -= 1
        if start < end:
            words.append(word[start:end].lower())
    return words


@register
def count_words(text: str) -> dict[str, int]:
    """Count how often each word occurs.

    Words are compared case-insensitively, without surrounding punctuation.

    Args:
        text: the text to count the words of
    """
    counts: dict[str, int] = {}
    for word in _words(text):
        counts[word] = counts.get(word, 0) + 1
    return counts


@model
class Stats:
    """Counts of a text.

    Attributes:
        words: The number of words.
        chars: The number of characters.
        lines: The number of lines.
    """

    words: int
    chars: int
    lines: int


@register
def stats(text: str) -> Stats:
    """Count the words, characters and lines of a text.

    Args:
        text: the text to count
    """
    return Stats(words=len(_words(text)), chars=len(text), lines=len(text.splitlines()))


@register
def summarize(stats: Stats) -> str:
    """Describe counts of a text in words.

    Args:
        stats: the counts, as `stats` returns them
    """
    return f"{stats.words} words, {stats.chars} characters, {stats.lines} lines"


@register
def repeat(text: str, times: int = 2, separator: str = "") -> str:
    """Repeat a text.

    Args:
        text: the text to repeat
        times: how often, at most 255
        separator: what goes between the repetitions
    """
    if not 0 <= times <= 255:
        raise ActionError(f"argument 'times': expected INT between 0 and 255, got number {times}")
    return separator.join([text] * times)
