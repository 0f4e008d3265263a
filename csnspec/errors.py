"""The one error type csnspec raises for bad input, rendered as `file:line:col`, source line and caret."""

from __future__ import annotations

import re
from typing import NamedTuple

# A line break is "\n", "\r\n" or a lone "\r", and nothing else: positions (lark counts "\n")
# and the quoted source line must agree, so every reader splits lines with `source_lines`
# and parsers read `normalize_newlines(text)`. Other separators (form feed, "\x0b", "\x1c",
# "\x85", U+2028...) are characters within a line: legal whitespace or a syntax error there.
_LINE_BREAK = re.compile(r"\r\n?|\n")
# Echoed text is bounded: a message never quotes more than this much of one token or line.
MAX_ECHO = 80


def normalize_newlines(text: str) -> str:
    """The text with every line break ("\r\n", lone "\r") written as "\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def source_lines(text: str) -> list[str]:
    """The lines of a source text, split where `normalize_newlines` puts its line breaks."""
    return _LINE_BREAK.split(text)


def _escaped_char(char: str) -> str:
    # control and format characters (ESC, NUL, U+2028, zero-width space...) never reach the
    # terminal raw; they are shown as Python writes them in a string. Tabs and newlines stay:
    # multi-line messages (a checkpoint's list of keys) are csnspec's own text.
    if char in "\t\n" or char.isprintable():
        return char
    return repr(char)[1:-1] if char not in "'\"" else char


def escaped(text: str) -> str:
    """The text with control and other unprintable characters written as escapes."""
    if text.isprintable():  # (the common case, checked at C speed)
        return text
    return "".join(_escaped_char(c) for c in text)


def shortened(text: str, limit: int = MAX_ECHO) -> str:
    """The text, cut in the middle when longer than `limit` characters (saying how long)."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...{text[-keep // 2 :]} ({len(text)} characters)"


_QUOTED = re.compile("'([^'\\n]{" + str(MAX_ECHO + 1) + ",})'")


def _bounded(message: str) -> str:
    # quoted tokens (`got '...'`) are what a message echoes from its input
    return escaped(_QUOTED.sub(lambda m: "'" + shortened(m.group(1)) + "'", message))


class Span(NamedTuple):
    """A position in a source text (1-based line and column) and the length it covers."""

    # (a named tuple: the parser makes one per token it may report, so it must be cheap)
    line: int
    column: int
    length: int = 1

    @classmethod
    def of(cls, token) -> Span:
        """The span of a lark token."""
        return cls(token.line, token.column, len(token) or 1)


class CsnError(Exception):
    """A spec (or space, or checkpoint) that csnspec cannot accept.

    `str(err)` is the full user-facing message; the CLI prints it and exits with status 2.
    """

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        source: str | None = None,
        filename: str | None = None,
        fields: tuple[str, ...] = (),
    ):
        super().__init__(message)
        # the spec field paths ("stages.2.groups") the error is about, most specific first,
        # for a caller that knows where each was written (see `csnspec.build.locate`)
        self.fields = fields
        self.message = message
        self.span = span
        self.hint = hint
        self.source = source
        self.filename = filename

    def located(self, source: str | None, filename: str | None) -> CsnError:
        """Attach the source text and file name, keeping any already set."""
        if self.source is None:
            self.source = source
        if self.filename is None:
            self.filename = filename
        return self

    def __str__(self) -> str:
        # no file: a spec given as text, or a flag or setting (then the program speaks)
        name = escaped(self.filename or ("<spec>" if self.span is not None else "csnspec"))
        message = _bounded(self.message)
        if self.span is None:
            head = f"{name}: error: {message}"
        else:
            head = f"{name}:{self.span.line}:{self.span.column}: error: {message}"
        lines = [head]
        if self.span is not None and self.source is not None:
            lines += _quoted_line(self.source, self.span)
        if self.hint:
            lines.append(f"hint: {_bounded(self.hint)}")
        return "\n".join(lines)


def _quoted_line(source: str, span: Span) -> list[str]:
    """The source line a span is on and a caret under it: unprintable characters escaped,
    at most about 2 * MAX_ECHO characters of a long line shown around the caret."""
    src_lines = source_lines(source)
    if not 0 < span.line <= len(src_lines):
        return []
    line = src_lines[span.line - 1]
    start = span.column - 1
    end = min(len(line), start + max(1, min(span.length, MAX_ECHO)))  # a long token in part
    left = max(0, start - MAX_ECHO)
    right = min(len(line), max(end, start + 1) + MAX_ECHO)
    before = escaped(line[left:start]).expandtabs(1)
    marked = escaped(line[start:end]).expandtabs(1)
    after = escaped(line[end:right]).expandtabs(1)
    if left:
        before = "..." + before
    if right < len(line):
        after += "..."
    width = max(1, min(len(marked), MAX_ECHO))
    return [f"    {before}{marked}{after}", "    " + " " * len(before) + "^" * width]


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint for a misspelt word, or None when nothing is close."""
    import difflib  # only when there is a misspelling to explain: it slows every start

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[close[0]]}'?" if close else None
