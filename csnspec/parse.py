"""Text to spec IR: the lark front end and the translation of syntax errors into plain words."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path


def _import_lark():
    # lark imports the third-party `regex` module when it is installed (tens of ms at start-up)
    # though it only needs it for Unicode categories, which the .csn grammar does not use; a
    # None entry in sys.modules makes that import fail, and is removed again at once.
    hide = "regex" not in sys.modules and "lark" not in sys.modules
    if hide:
        sys.modules["regex"] = None
    try:
        import lark
    finally:
        if hide:
            del sys.modules["regex"]
    return lark


lark = _import_lark()

from .errors import CsnError, Span, did_you_mean

GRAMMAR = Path(__file__).parent / "grammar" / "csn.lark"

STATEMENTS = ("network", "input", "classes", "norm", "stem", "stages", "stage", "head")

# What each terminal is, in the words of the language reference (docs/language.md).
TERMINAL_WORDS = {
    **{kw.upper(): f"'{kw}'" for kw in STATEMENTS},
    "TIMES": "'x' and the block count",
    "EQUALS": "'='",
    "COMMA": "','",
    "LSQB": "'['",
    "RSQB": "']'",
    "DIMS": "sizes like 3x7x7",
    "FACTORIZATION": "a factorization ('3d' or '2+1d')",
    "FLOAT": "a number",
    "INT": "a whole number",
    "NAME": "a name",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}


@cache
def _parser(lexer: str) -> lark.Lark:
    # cache=True keeps the LALR tables in a temp file: a cold process then starts faster.
    return lark.Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        lexer=lexer,
        propagate_positions=False,  # errors point at tokens, which carry their own positions
        maybe_placeholders=False,
        cache=True,
    )


def parse_tree(text: str, filename: str | None = None) -> lark.Tree:
    """Parse text into a lark tree, raising CsnError for syntax errors."""
    # The basic lexer is about twice as fast as the contextual one. Where it succeeds, both give
    # the same tree (its token at each point was one the parser accepted, hence also the
    # contextual lexer's choice); where it fails, the contextual parser decides: it accepts
    # words that are keywords elsewhere (`network stage`) and knows what each state expects,
    # which makes better error messages.
    try:
        return _parser("basic").parse(text)
    except lark.exceptions.LarkError:
        pass
    try:
        return _parser("contextual").parse(text)
    except lark.exceptions.UnexpectedInput as err:
        raise _syntax_error(err, text).located(text, filename) from None
    except lark.exceptions.LarkError as err:  # none known; never let lark's own type escape
        raise CsnError(f"cannot parse the spec: {err}", filename=filename) from None


def _describe(expected) -> str:
    names = set(expected)
    if names >= {kw.upper() for kw in ("network", "input", "stages")}:
        return "a statement (" + ", ".join(STATEMENTS) + ")"
    if "_NL" in names:
        names.discard("$END")  # "the end of the line" says it; the file may end there too
    words = {TERMINAL_WORDS.get(n, n.lower()) for n in names}
    if "EQUALS" not in names and "NAME" in names and names & {"TIMES", "_NL", "$END", "COMMA"}:
        words.discard(TERMINAL_WORDS["NAME"])  # here a name can only start an option
        words.add("an option like g=4")
    words = sorted(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _got(token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_NL":
        return "the end of the line"
    return f"'{token}'"


def _syntax_error(err: lark.exceptions.UnexpectedInput, text: str) -> CsnError:
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        msg = f"unexpected character '{char}'"
        if err.allowed:
            msg += f"; expected {_describe(err.allowed)}"
        return CsnError(msg, Span(err.line, err.column), hint=_char_hint(char))
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        expected = set(err.expected) | set(getattr(err, "accepts", None) or ())
        msg = f"expected {_describe(expected)}, got {_got(tok)}"
        line, column = err.line, err.column
        if tok.type == "$END" or line is None or line < 0:
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        length = len(str(tok)) if tok.type not in ("$END", "_NL") else 1
        return CsnError(msg, Span(line, column, length), hint=_token_hint(tok, expected))
    # UnexpectedEOF
    lines = text.splitlines() or [""]
    return CsnError(
        f"unexpected end of file; expected {_describe(err.expected)}",
        Span(len(lines), len(lines[-1]) + 1),
    )


def _char_hint(char: str) -> str | None:
    if not char:
        return None
    if not char.isascii():
        import unicodedata

        name = unicodedata.name(char, "")
        return (
            f"U+{ord(char):04X} {name} is not ASCII; names use ASCII letters, digits, '-' and '_'"
        ).replace("  ", " ")
    if char in "\"'`":
        return "names are written without quotes, e.g. `network ip-csn-152`"
    if char in "(){}":
        return "lists use square brackets, e.g. [3,4,6,3]"
    if char == ":":
        return "options are written key=value, e.g. g=4"
    if char == "-":
        return "names start with a letter"
    return None


def _token_hint(tok, expected: set) -> str | None:
    if "_NL" in expected and str(tok) in STATEMENTS:
        return "each statement goes on its own line"
    if tok.type == "NAME" and "NETWORK" in expected:
        return did_you_mean(str(tok), STATEMENTS) or "each line starts with one of: " + ", ".join(
            STATEMENTS
        )
    if "TIMES" in expected and tok.type in ("LSQB", "INT"):
        return "write 'x' before the block counts, e.g. `stages bottleneck x [3,4,6,3]`"
    if "LSQB" in expected and tok.type == "INT":
        return (
            "a `stages` line takes one block count per stage, e.g. `x [3,4,6,3]`; "
            "use a `stage` line for a single stage"
        )
    if "INT" in expected and tok.type == "LSQB":
        return "a `stage` line takes one block count, e.g. `x 3`; use `stages` for a list"
    if "EQUALS" in expected:
        return "options are written key=value, e.g. g=4"
    if tok.type == "DIMS" and "INT" in expected:
        return "a single number is expected here"
    return None


def parse(text: str, filename: str | None = None):
    """Parse and validate a spec text into a `Network` (the spec IR)."""
    from .build import build
    from .lowering import lower

    tree = parse_tree(text, filename)
    try:
        net = build(tree)
        lower(net)  # semantic checks that need shapes: groups, widths, strides
    except CsnError as err:
        raise err.located(text, filename) from None
    return net


def read_spec(path) -> str:
    """The text of a spec file, or a CsnError that says why it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CsnError(f"cannot read spec: {err.strerror or err}", filename=str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CsnError(
            f"cannot read spec: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line})",
            filename=str(path),
            hint="save the file as UTF-8; the language itself is plain ASCII",
        ) from None


def load(path):
    """Read and validate a `.csn` file into a `Network`."""
    return parse(read_spec(path), str(path))
