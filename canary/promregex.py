"""Regular expressions that Prometheus can run: RE2 syntax, checked before use.

Prometheus evaluates `=~` matchers with Go's `regexp` package, which implements the
RE2 syntax. Python's `re` accepts more, so a pattern can pass `re.compile` and still
make every Prometheus query fail. The constructs RE2 refuses, from RE2's syntax
reference (google/re2 `doc/syntax.txt`, mirrored in Go's `src/regexp/syntax/doc.go`,
whose entries are marked "NOT SUPPORTED"):

- lookarounds: ``(?=re)``, ``(?!re)``, ``(?<=re)``, ``(?<!re)``;
- backreferences: ``\\1`` … ``\\9``, ``\\g…``, ``\\k<name>``, ``(?P=name)``;
- possessive repetitions ``x*+``, ``x++``, ``x?+``, ``x{n,m}+`` and atomic groups
  ``(?>re)``;
- conditionals ``(?(cond)yes|no)`` and comments ``(?#text)``;
- ``\\Z`` (RE2 has ``\\z``), and flags other than ``i``, ``m``, ``s``, ``U``
  (Python's ``a``, ``L``, ``u``, ``x``);
- counted repetitions above 1000 (``x{1001}``: an implementation limit).
"""

from __future__ import annotations

import re

__all__ = ["regex_problem"]

_MAX_REPEAT = 1000
_RE2_FLAGS = set("imsU-")
_COUNTED = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` is not a regular expression both Python and Prometheus accept."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    problem = _re2_problem(pattern)
    return f"{problem}, which Prometheus (RE2) does not support" if problem else None


def _re2_problem(pattern: str) -> str | None:
    i = 0
    n = len(pattern)
    quantified = False  # the previous token was a repetition operator
    while i < n:
        char = pattern[i]
        if char == "\\":
            escape = pattern[i + 1 : i + 2]
            if escape.isdigit() and escape != "0":
                return f"backreference \\{escape}"
            if escape in ("g", "k"):
                return f"backreference \\{escape}"
            if escape == "Z":
                return "\\Z (RE2 writes end of text as \\z)"
            i += 2
            quantified = False
            continue
        if char == "[":
            i = _skip_class(pattern, i)
            quantified = False
            continue
        if char == "(" and pattern.startswith("(?", i):
            head = pattern[i + 2 : i + 4]
            if head[:1] in ("=", "!") or head in ("<=", "<!"):
                opening = "(?" + (head if head[:1] == "<" else head[:1])
                return f"lookaround {opening}…)"
            if head[:1] == ">":
                return "atomic group (?>…)"
            if head[:1] == "#":
                return "comment (?#…)"
            if head[:1] == "(":
                return "conditional (?(…)…)"
            if pattern.startswith("(?P=", i):
                return "backreference (?P=name)"
            if head[:1] not in ("P", ":", "<"):
                end = i + 2
                while end < n and pattern[end] not in ":)":
                    end += 1
                flags = pattern[i + 2 : end]
                if set(flags) - _RE2_FLAGS:
                    return f"flags (?{flags}) (RE2 knows i, m, s and U)"
            i += 2
            quantified = False
            continue
        if char in "*+?":
            if char == "+" and quantified:
                return "possessive repetition (…++ or …*+ or …?+ or …}+)"
            if char == "?" and quantified:
                quantified = False  # a lazy repetition: x*?, x+?, x??
                i += 1
                continue
            quantified = True
            i += 1
            continue
        if char == "{":
            counted = _COUNTED.match(pattern, i)
            if counted and (counted.group(1) or counted.group(2)):
                numbers = [int(g) for g in counted.groups() if g]
                if max(numbers) > _MAX_REPEAT:
                    return f"repetition count {max(numbers)} (RE2 allows at most {_MAX_REPEAT})"
                i = counted.end()
                quantified = True
                continue
        quantified = False
        i += 1
    return None


def _skip_class(pattern: str, start: int) -> int:
    """The index after the character class opening at `start`."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
