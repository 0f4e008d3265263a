"""Lark's syntax errors in plain words: one translator for the spec and the space languages.

Each language gives a `Language`: what its terminals are called in the language reference
(docs/language.md), its statement keywords, and its hint rules. The translator itself knows
nothing of either language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lark

from .errors import CsnError, Span, source_lines

# The terminals both languages share (space.lark imports them from csn.lark).
SHARED_WORDS = {
    "TIMES": "'x' and the block count",
    "EQUALS": "'='",
    "COMMA": "','",
    "LSQB": "'['",
    "RSQB": "']'",
    "SLASH": "'/' and the next value of an alternation",
    "DIMS": "sizes like 3x7x7",
    "FACTORIZATION": "a factorization ('3d', '2+1d' or '1+2d')",
    "FLOAT": "a number",
    "INT": "a whole number",
    "NAME": "a name",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}

# A hint rule: (the offending character or token, the terminals expected there) -> a hint or None.
CharHint = Callable[[str, frozenset], "str | None"]
# (the unexpected token, the terminals expected there, the token read before it or None)
TokenHint = Callable[[lark.Token, frozenset, "lark.Token | None"], "str | None"]


@dataclass(frozen=True)
class Language:
    """What the translator needs to know about one language."""

    statements: tuple[str, ...]  # statement keywords, in the order a message lists them
    words: dict  # terminal name -> its description in words
    # terminals whose joint presence means "any statement may start here"
    statement_start: frozenset
    char_hints: tuple[CharHint, ...] = ()
    token_hints: tuple[TokenHint, ...] = ()

    @classmethod
    def of(cls, statements, extra_words=None, **rules) -> Language:
        words = {**SHARED_WORDS, **{kw.upper(): f"'{kw}'" for kw in statements}}
        words.update(extra_words or {})
        return cls(tuple(statements), words, **rules)


def expected_words(expected, language: Language) -> str:
    """The terminals a parser expected, as a list in words."""
    names = set(expected)
    if names >= language.statement_start:
        return "a statement (" + ", ".join(language.statements) + ")"
    if "_NL" in names:
        names.discard("$END")  # "the end of the line" says it; the file may end there too
    words = {language.words.get(n, n.lower()) for n in names}
    if "EQUALS" not in names and "NAME" in names and names & {"TIMES", "_NL", "$END", "COMMA"}:
        words.discard(language.words["NAME"])  # here a name can only start an option
        words.add("an option like g=4")
    words = sorted(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _got(token: lark.Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_NL":
        return "the end of the line"
    return f"'{token}'"


def _end_of(text: str) -> Span:
    lines = source_lines(text)
    return Span(len(lines), len(lines[-1]) + 1)


def _first_hint(rules, subject, expected: frozenset, *context) -> str | None:
    for rule in rules:
        hint = rule(subject, expected, *context)
        if hint:
            return hint
    return None


def syntax_error(err: lark.exceptions.UnexpectedInput, text: str, language: Language) -> CsnError:
    """A lark syntax error in `text` (newlines normalised) as a CsnError at its token."""
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        allowed = frozenset(err.allowed or ())
        message = f"unexpected character '{char}'"
        if allowed:
            message += f"; expected {expected_words(allowed, language)}"
        hint = _first_hint(language.char_hints, char, allowed) if char else None
        return CsnError(message, Span(err.line, err.column), hint=hint)
    if isinstance(err, lark.exceptions.UnexpectedToken):
        token = err.token
        expected = frozenset(err.expected) | frozenset(getattr(err, "accepts", None) or ())
        message = f"expected {expected_words(expected, language)}, got {_got(token)}"
        if token.type == "$END" or err.line is None or err.line < 0:
            span = _end_of(text)
        else:
            length = len(str(token)) if token.type != "_NL" else 1
            span = Span(err.line, err.column, length)
        history = getattr(err, "token_history", None) or [None]
        hint = _first_hint(language.token_hints, token, expected, history[-1])
        return CsnError(message, span, hint=hint)
    # UnexpectedEOF
    return CsnError(
        f"unexpected end of file; expected {expected_words(err.expected, language)}",
        _end_of(text),
    )


def parse_with(parser: lark.Lark, text: str, filename: str | None, language: Language):
    """Parse text (newlines normalised) with a lark parser; syntax errors become CsnErrors."""
    try:
        return parser.parse(text)
    except lark.exceptions.UnexpectedInput as err:
        raise syntax_error(err, text, language).located(text, filename) from None
    except lark.exceptions.LarkError as err:  # none known; never let lark's own type escape
        raise CsnError(f"cannot parse: {err}", filename=filename) from None
