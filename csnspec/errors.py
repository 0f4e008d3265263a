"""The one error type csnspec raises for bad input, rendered as `file:line:col`, source line and caret."""

from __future__ import annotations

from typing import NamedTuple


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
    ):
        super().__init__(message)
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
        name = self.filename or ("<spec>" if self.span is not None else "csnspec")
        if self.span is None:
            head = f"{name}: error: {self.message}"
        else:
            head = f"{name}:{self.span.line}:{self.span.column}: error: {self.message}"
        lines = [head]
        if self.span is not None and self.source is not None:
            src_lines = self.source.splitlines()
            if 0 < self.span.line <= len(src_lines):
                text = src_lines[self.span.line - 1].expandtabs(1)
                lines.append(f"    {text}")
                width = max(1, min(self.span.length, len(text) - self.span.column + 1))
                lines.append("    " + " " * (self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint for a misspelt word, or None when nothing is close."""
    import difflib  # only when there is a misspelling to explain: it slows every start

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[close[0]]}'?" if close else None
