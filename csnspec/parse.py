"""Text to spec IR: the lark front end and the translation of syntax errors into plain words."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import lark

from .errors import CsnError, did_you_mean, normalize_newlines
from .syntax import Language, parse_with

GRAMMAR = Path(__file__).parent / "grammar" / "csn.lark"

# Specs (and spaces) are refused past this size before parsing (docs/language.md, "Files"):
# a real spec is a few hundred bytes, the largest one `stages` line can usefully be (1,000
# stages with widths and strides) about 15 KB; lark reads some 20-50 tokens per millisecond,
# so this bounds the worst file (every character a token) to a few seconds.
MAX_SPEC_BYTES = 64 * 1024

STATEMENTS = ("network", "input", "classes", "norm", "stem", "stages", "stage", "head")


def _char_hint(char: str, expected) -> str | None:
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


def _token_hint(tok, expected, previous) -> str | None:
    if "_NL" in expected and str(tok) in STATEMENTS:
        return "each statement goes on its own line"
    if tok.type == "NAME" and "NETWORK" in expected:
        return did_you_mean(str(tok), STATEMENTS) or "each line starts with one of: " + ", ".join(
            STATEMENTS
        )
    if "TIMES" in expected and tok.type in ("LSQB", "INT"):
        if previous is not None and previous.type == "NAME" and str(previous) == "x":
            # `kernel-a=3x1x1/ x [3,4]`: the 'x' was read as the alternation's next value
            return "a '/' needs a value after it, e.g. kernel-a=3x1x1/1x1x1"
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


SPEC_LANGUAGE = Language.of(
    STATEMENTS,
    statement_start=frozenset({"NETWORK", "INPUT", "STAGES"}),
    char_hints=(_char_hint,),
    token_hints=(_token_hint,),
)


@cache
def _parser() -> lark.Lark:
    # The contextual lexer (lark's default for LALR) knows what each parser state expects: it
    # accepts words that are keywords elsewhere (`network stage`) and makes better errors.
    # cache=True keeps the LALR tables in a temp file: a cold process then starts faster.
    return lark.Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        propagate_positions=False,  # errors point at tokens, which carry their own positions
        maybe_placeholders=False,
        cache=True,
    )


def _too_large(filename: str | None, what: str) -> CsnError:
    return CsnError(
        f"the {what} is larger than {MAX_SPEC_BYTES // 1024} KiB; csnspec reads no larger {what}s",
        filename=filename,
        hint="a whole network takes a few lines; is this the right file?",
    )


def check_size(text: str, filename: str | None, what: str = "spec") -> None:
    """Refuse a text past MAX_SPEC_BYTES before any parsing."""
    # (characters, not bytes: at most 4 bytes each, so a cheap bound before encoding)
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8")) > MAX_SPEC_BYTES:
        raise _too_large(filename, what)


def parse_tree(text: str, filename: str | None = None) -> lark.Tree:
    """Parse text (newlines normalised) into a lark tree, raising CsnError for syntax errors."""
    return parse_with(_parser(), text, filename, SPEC_LANGUAGE)


def parse(text: str, filename: str | None = None):
    """Parse and validate a spec text into a `Network` (the spec IR)."""
    from .build import build, locate
    from .lowering import lower

    check_size(text, filename)
    text = normalize_newlines(text)
    tree = parse_tree(text, filename)
    try:
        net, spans = build(tree)
        try:
            lower(net)  # semantic checks that need shapes: groups, widths, strides
        except CsnError as err:
            err.span = err.span or locate(spans, err.fields)
            raise
    except CsnError as err:
        raise err.located(text, filename) from None
    return net


def read_spec(path, what: str = "spec") -> str:
    """The text of a spec (or space) file, or a CsnError that says why it cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)  # a bounded read: the file may be /dev/zero
    except OSError as err:
        raise CsnError(f"cannot read {what}: {err.strerror or err}", filename=str(path)) from None
    if len(data) > MAX_SPEC_BYTES:
        raise _too_large(str(path), what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = normalize_newlines(data[: err.start].decode("utf-8", "replace"))
        line = before.count("\n") + 1
        raise CsnError(
            f"cannot read {what}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line})",
            filename=str(path),
            hint="save the file as UTF-8; the language itself is plain ASCII",
        ) from None


def load(path):
    """Read and validate a `.csn` file into a `Network`."""
    return parse(read_spec(path), str(path))


def located_in(err: CsnError, path) -> CsnError:
    """An error about spec fields found after parsing (by a backend) pointed at where the
    spec file `path` writes them: `file:line:col` and the line with a caret."""
    from .build import build, locate

    text = normalize_newlines(read_spec(path))
    if err.span is None and err.fields:
        _, spans = build(parse_tree(text, str(path)))
        err.span = locate(spans, err.fields)
    return err.located(text, str(path))
