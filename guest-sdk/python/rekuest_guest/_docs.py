"""Docstrings → descriptions, and names → titles.

Understands the three common docstring styles (Google, NumPy and reST) well enough to find
the summary and body, one description per parameter and one per return; it needs nothing
outside the standard library, so that it runs inside a component.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ["Docs", "parse", "title_case"]

# Google/NumPy section titles, lower-cased, and what they hold.
_SECTIONS = {
    "args": "params",
    "arguments": "params",
    "parameters": "params",
    "params": "params",
    "keyword args": "params",
    "keyword arguments": "params",
    "other parameters": "params",
    "attributes": "params",
    "members": "params",
    "returns": "returns",
    "return": "returns",
    "yields": "yields",
    "yield": "yields",
    "raises": "skip",
    "raise": "skip",
    "exceptions": "skip",
    "except": "skip",
    "example": "skip",
    "examples": "skip",
    "note": "skip",
    "notes": "skip",
    "warning": "skip",
    "warnings": "skip",
    "warns": "skip",
    "see also": "skip",
    "todo": "skip",
    "references": "skip",
}

# `name`, `name (type)`, `type`, `tuple[int, str]`: what precedes the colon of an entry.
_ENTRY = re.compile(
    r"^(?P<name>\*{0,2}[A-Za-z_][\w.]*(?:\[.*\])?)\s*(?:\((?P<type>[^)]*)\))?\s*:(?:\s+(?P<text>.*))?$"
)
# reST fields: `:param a: text`, `:param int a: text`, `:returns: text`.
_REST_FIELD = re.compile(r"^:(?P<field>\w+)(?:\s+(?P<args>[^:]*))?:\s*(?P<text>.*)$")
_NUMPY_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")


@dataclass
class Docs:
    """What a docstring says."""

    #: Summary and body, without the parameter and return sections; None without a summary.
    description: str | None = None
    #: Descriptions of parameters (or attributes) by name.
    params: dict[str, str] = field(default_factory=dict)
    #: Descriptions of returns in order (`return0`, `return1`, ...).
    returns: list[str] = field(default_factory=list)
    #: Descriptions of yielded items in order, for generators.
    yields: list[str] = field(default_factory=list)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_title(line: str) -> str | None:
    stripped = line.strip()
    if stripped.endswith(":") and stripped[:-1].lower() in _SECTIONS:
        return stripped[:-1].lower()
    return None


def _entries(lines: list[str], numpy: bool, named: bool) -> list[tuple[str | None, str]]:
    """Splits a section's lines into (name, text) entries.

    Google: a new entry starts at the section's base indent with `name (type): text` (or,
    for returns, `type: text`); deeper lines continue it. NumPy: `name : type` at the base
    indent, the text on the deeper lines below. A line at the base indent without a head
    continues the current entry (or starts an unnamed one), so a wrapped paragraph under
    `Returns:` stays one description.
    """
    body = [line for line in lines if line.strip()]
    if not body:
        return []
    base = min(_indent(line) for line in body)
    entries: list[tuple[str | None, list[str]]] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if entries and entries[-1][1] and entries[-1][1][-1] != "":
                entries[-1][1].append("")
            continue
        if _indent(line) == base:
            if numpy:
                name, _, _ = stripped.partition(":")
                name = name.strip()
                if named:
                    entries.append((name.lstrip("*"), []))
                else:
                    # `type` or `name : type`: the description is on the lines below.
                    entries.append((None, []))
                continue
            match = _ENTRY.match(stripped)
            if match:
                name = match.group("name").lstrip("*") if named else None
                entries.append((name, [match.group("text") or ""]))
                continue
            if named and entries:
                entries[-1][1].append(stripped)
                continue
            if not entries:
                entries.append((None, []))
            entries[-1][1].append(stripped)
            continue
        if not entries:
            entries.append((None, []))
        entries[-1][1].append(stripped)
    return [(name, _paragraph(texts)) for name, texts in entries]


def _paragraph(lines: list[str]) -> str:
    """Lines joined into one line (blank lines become one space)."""
    return " ".join(line.strip() for line in lines if line.strip())


def _description(body: list[str]) -> str | None:
    """The summary (first paragraph, on one line) and the rest, joined by a blank line."""
    lines: list[str] = []
    for line in body:
        blank = not line.strip()
        if blank and (not lines or not lines[-1].strip()):
            continue
        lines.append(line.rstrip())
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    split = next((index for index, line in enumerate(lines) if not line.strip()), len(lines))
    summary = " ".join(line.strip() for line in lines[:split])
    rest = "\n".join(lines[split + 1 :])
    return f"{summary}\n\n{rest}" if rest else summary


def parse(docstring: str | None) -> Docs:
    """Parses a docstring in Google, NumPy or reST style."""
    docs = Docs()
    if not docstring or not docstring.strip():
        return docs
    lines = inspect.cleandoc(docstring).splitlines()
    body: list[str] = []
    # The current section: (kind, numpy?, header indent, lines).
    section: tuple[str, bool, int, list[str]] | None = None
    sections: list[tuple[str, bool, list[str]]] = []
    rest_field: tuple[str, str | None] | None = None
    in_fence = False

    def close() -> None:
        nonlocal section
        if section is not None:
            sections.append((section[0], section[1], section[3]))
            section = None

    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or stripped.startswith(("```", "~~~")):
            if section is None:
                body.append(line)
            index += 1
            continue
        # NumPy: a title line underlined with dashes.
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if stripped.lower() in _SECTIONS and _NUMPY_UNDERLINE.match(following):
            close()
            rest_field = None
            section = (_SECTIONS[stripped.lower()], True, _indent(line), [])
            index += 2
            continue
        title = _google_title(line)
        if title is not None:
            close()
            rest_field = None
            section = (_SECTIONS[title], False, _indent(line), [])
            index += 1
            continue
        rest = _REST_FIELD.match(stripped)
        if rest:
            close()
            kind = rest.group("field").lower()
            words = (rest.group("args") or "").split()
            text = rest.group("text").strip()
            if kind in ("param", "parameter", "arg", "argument", "key", "keyword") and words:
                docs.params[words[-1]] = text
                rest_field = ("param", words[-1])
            elif kind in ("returns", "return"):
                docs.returns.append(text)
                rest_field = ("returns", None)
            elif kind in ("yields", "yield"):
                docs.yields.append(text)
                rest_field = ("yields", None)
            else:
                rest_field = ("skip", None)
            index += 1
            continue
        if rest_field is not None:
            if stripped and _indent(line) > 0:
                kind, name = rest_field
                if kind == "param" and name is not None:
                    docs.params[name] = _paragraph([docs.params[name], stripped])
                elif kind in ("returns", "yields"):
                    texts = docs.returns if kind == "returns" else docs.yields
                    texts[-1] = _paragraph([texts[-1], stripped])
                index += 1
                continue
            if not stripped:
                index += 1
                continue
            rest_field = None
        if section is not None:
            _, numpy, indent, section_lines = section
            deeper = any(_indent(seen) > indent for seen in section_lines if seen.strip())
            after_blank = bool(section_lines) and not section_lines[-1].strip()
            if stripped and _indent(line) <= indent and not numpy and (deeper or after_blank):
                # Text back at the title's indent ends a Google section (unless the section's
                # entries are at that indent too, as after a docstring that starts with its
                # title). NumPy sections sit at the title's indent and end at the next title.
                close()
            else:
                section_lines.append(line)
                index += 1
                continue
        body.append(line)
        index += 1
    close()

    for kind, numpy, section_lines in sections:
        if kind == "params":
            for name, text in _entries(section_lines, numpy, named=True):
                if name and text:
                    docs.params[name] = text
        elif kind in ("returns", "yields"):
            texts = [text for _, text in _entries(section_lines, numpy, named=False) if text]
            (docs.returns if kind == "returns" else docs.yields).extend(texts)
    docs.description = _description(body)
    return docs


def title_case(name: str) -> str:
    """`add_numbers` → `Add Numbers`, as the Python agent's `snake_to_title_case`."""
    return " ".join(word.capitalize() for word in name.split("_") if word)
