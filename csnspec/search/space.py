"""Design spaces: parse a space file (the .csn language with `choose(...)` and `require`) and
resolve one choice of every `choose` into spec IR parts.

A candidate is a tuple of alternative indices, one per `choose`. Each line of the space is
resolved on its own: its choices are substituted into its source text, options its family does
not take (`g=` on bottleneck) are dropped, and the line is built by the spec front end itself
(`csnspec.parse.parse_tree` + `csnspec.build.build`) inside a minimal spec. The parts of a line
are cached per combination of that line's choices, so a candidate costs a few dict look-ups;
shapes, groups and constraints are checked later by `csnspec.search.score`.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import lark

from ..build import build
from ..errors import CsnError, Span, did_you_mean, normalize_newlines
from ..parse import check_size, parse_tree, read_spec
from ..spec import BLOCK_OPTION, NAME_RE, family_named
from ..syntax import Language, parse_with

GRAMMAR = Path(__file__).parent / "space.lark"
SPEC_GRAMMAR_DIR = Path(__file__).resolve().parent.parent / "grammar"

# Constraint metrics: the totals of `csnspec.analysis.Cost`, plus activation memory in bytes.
METRICS = ("flops", "params", "bn_params", "interactions", "activations", "memory")
UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
OPERATORS = ("<=", "<", ">=", ">")
STATEMENTS = ("space", "input", "classes", "norm", "stem", "stages", "stage", "head", "require")
# Lines resolved per combination of their choices are validated eagerly (every combination
# parsed when the space is loaded) up to this many combinations, lazily beyond it.
EAGER_LINE_COMBOS = 5000


@cache
def _parser() -> lark.Lark:
    return lark.Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        import_paths=[str(SPEC_GRAMMAR_DIR)],
        cache=True,  # lark re-checks the imported csn.lark's hash before using the cache
    )


@dataclass(frozen=True)
class Choice:
    """One `choose(...)`: its alternatives as source text, where they are, and a column label."""

    index: int
    label: str
    alternatives: tuple[str, ...]
    spans: tuple[Span, ...]
    starts: tuple[int, ...]  # source offset of each alternative
    span: Span  # the `choose` keyword
    start: int  # source offsets of the whole `choose(...)`
    end: int

    def __len__(self) -> int:
        return len(self.alternatives)


@dataclass(frozen=True)
class Require:
    """A constraint line: `require METRIC OP LIMIT`."""

    metric: str
    op: str
    limit: float
    text: str  # as written, for messages and reports
    span: Span

    def holds(self, cost) -> bool:
        value = cost.activation_bytes if self.metric == "memory" else getattr(cost, self.metric)
        if self.op == "<=":
            return value <= self.limit
        if self.op == "<":
            return value < self.limit
        if self.op == ">=":
            return value >= self.limit
        return value > self.limit


@dataclass(frozen=True)
class Skip:
    """Why a combination of choices is not a candidate (`error` locates it, where it can)."""

    reason: str
    error: CsnError | None = None


@dataclass
class _Option:
    key: str
    start: int  # offsets of the whole `key=value`
    end: int
    token: lark.Token


@dataclass
class Line:
    """One statement of the space and its choices."""

    kind: str
    start: int
    end: int
    line: int  # 1-based line number in the space file
    slots: tuple[int, ...]  # indices of the choices on this line
    family: object = None  # the family token, or the Choice that picks it
    options: list[_Option] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # combo -> (part, note) or Skip


class Space:
    """A parsed design space. `resolve(idx)` gives the parts of one candidate."""

    def __init__(self, text: str, filename: str | None = None):
        check_size(text, filename, "space")
        text = normalize_newlines(text)
        self.source = text
        self.filename = filename
        self.choices: list[Choice] = []
        self.lines: list[Line] = []
        self.requires: list[Require] = []
        self._interned: dict = {}  # part value -> small int id (for de-duplication keys)
        self._read(parse_with(_parser(), text, filename, SPACE_LANGUAGE))
        self.raw_size = 1
        for c in self.choices:
            self.raw_size *= len(c)
        self._validate_lines()

    # -- reading the tree ------------------------------------------------------------------

    def error(self, message: str, span: Span | None, hint: str | None = None) -> CsnError:
        return CsnError(message, span, hint=hint, source=self.source, filename=self.filename)

    def _read(self, tree: lark.Tree) -> None:
        seen: dict[str, lark.Token] = {}
        name_tok = None
        for statement in tree.children:
            kw = statement.children[0]
            if statement.data not in ("stage", "require"):
                if statement.data in seen:
                    raise self.error(
                        f"duplicate `{statement.data}` line (first at line {seen[statement.data].line})",
                        Span.of(kw),
                        hint="each statement appears once, except `stage` and `require`",
                    )
                seen[statement.data] = kw
            if statement.data == "space":
                name_tok = statement.children[1]
            elif statement.data == "require":
                self.requires.append(self._require(statement))
            else:
                self._line(statement)
        anchor = Span(1, 1)  # a missing statement is reported at the start of the file
        if name_tok is None:
            raise self.error(
                "the space has no `space` line",
                anchor,
                hint="start with a line like `space my-space`",
            )
        if not NAME_RE.match(str(name_tok)):
            raise self.error(
                f"'{name_tok}' cannot name a space",
                Span.of(name_tok),
                hint="a space name starts with a letter and has at most 64 letters, digits, '-' or '_'",
            )
        self.name = str(name_tok)
        for required, example in (("input", "input 3x8x224x224"), ("classes", "classes 400")):
            if required not in seen:
                raise self.error(
                    f"the space has no `{required}` line",
                    anchor,
                    hint=f"add a line like `{example}`",
                )
        kinds = {ln.kind for ln in self.lines}
        if not kinds & {"stages", "stage"}:
            raise self.error(
                "the space has no stages",
                anchor,
                hint="add e.g. `stages choose(bottleneck, bottleneck-D) x [3,4,6,3]`",
            )
        if {"stages", "stage"} <= kinds:
            second = next(ln for ln in self.lines if ln.kind == "stage")
            raise self.error(
                "use either one `stages` line or `stage` lines, not both", Span(second.line, 1)
            )

    def _require(self, statement: lark.Tree) -> Require:
        _, metric, op, number, *unit = statement.children
        name = str(metric).replace("-", "_")
        if name not in METRICS:
            raise self.error(
                f"unknown quantity '{metric}' in a constraint",
                Span.of(metric),
                hint=did_you_mean(str(metric), METRICS)
                or "constraints take: " + ", ".join(METRICS),
            )
        scale = 1
        if unit:
            if str(unit[0]) not in UNITS:
                raise self.error(
                    f"unknown unit '{unit[0]}'",
                    Span.of(unit[0]),
                    hint="units are K, M, G and T (thousand, million, billion, trillion), e.g. 30G",
                )
            scale = UNITS[str(unit[0])]
        limit = float(number) * scale
        if not math.isfinite(limit):
            raise self.error(
                f"a constraint limit must be a finite number, got '{number}'", Span.of(number)
            )
        if limit < 0:
            raise self.error("a constraint limit cannot be negative", Span.of(number))
        text = f"{name} {op} {number}{unit[0] if unit else ''}"
        return Require(name, str(op), limit, text, Span.of(metric))

    def _line(self, statement: lark.Tree) -> None:
        stage_no = sum(1 for ln in self.lines if ln.kind == "stage") + 1
        prefix = {"stage": f"stage{stage_no}.", "stem": "stem.", "head": "head."}.get(
            statement.data, ""
        )
        line = Line(
            statement.data,
            statement.meta.start_pos,
            statement.meta.end_pos,
            statement.meta.line,
            (),
        )
        slots: list[int] = []

        def add_choice(node: lark.Tree, label: str) -> Choice:
            kw = node.children[0]
            alts = [c for c in node.children[1:] if not _is_punct(c)]
            if not alts:
                raise self.error(
                    "`choose()` needs at least one alternative",
                    Span.of(kw),
                    hint="list the values to try, e.g. choose(2,4,8)",
                )
            for alt in alts:
                inner = _first_choice(alt)
                if inner is not None:
                    raise self.error(
                        "choices cannot be nested",
                        Span.of(inner.children[0]),
                        hint="write every alternative out in one choose(...)",
                    )
            starts = tuple(_start(a) for a in alts)
            texts = tuple(self.source[_start(a) : _end(a)] for a in alts)
            spans = tuple(_span(a) for a in alts)
            labels = {c.label for c in self.choices}
            unique, n = label, 2
            while unique in labels:
                unique, n = f"{label}#{n}", n + 1
            ch = Choice(
                len(self.choices),
                unique,
                texts,
                spans,
                starts,
                Span.of(kw),
                _start(node),
                _end(node),
            )
            self.choices.append(ch)
            slots.append(ch.index)
            return ch

        def walk(node, label: str) -> None:
            # Find the choices under `node`; `label` names the value they stand for.
            if isinstance(node, lark.Token):
                return
            if node.data == "choice":
                add_choice(node, label)
                return
            if node.data == "option":
                key = node.children[0]
                line.options.append(_Option(str(key), _start(node), _end(node), key))
                walk(node.children[2], prefix + str(key))
                return
            if node.data == "cycle":  # one label per position of the alternation
                items = [c for c in node.children if not _is_punct(c)]
                for i, item in enumerate(items):
                    walk(item, f"{label}/{i}")
                return
            if node.data in ("list", "int_list"):
                items = [c for c in node.children if not _is_punct(c)]
                base = prefix + "blocks" if node.data == "int_list" else label
                for i, item in enumerate(items):
                    walk(item, f"{base}[{i}]")
                return
            if node.data == "family":
                child = node.children[0]
                line.family = (
                    add_choice(child, prefix + "family") if isinstance(child, lark.Tree) else child
                )
                return
            if node.data == "layer":
                layer = prefix + str(node.children[0])
                for child in node.children[1:]:
                    if isinstance(child, lark.Tree) and child.data == "option":
                        key = child.children[0]
                        walk(child.children[2], f"{layer}.{key}")
                    else:
                        walk(child, layer)
                return
            for child in node.children:
                walk(child, label)

        for child in statement.children[1:]:
            own = {"input": "input", "classes": "classes", "stages": "blocks", "stage": "blocks"}
            walk(child, prefix + own.get(statement.data, statement.data))
        line.slots = tuple(slots)
        self.lines.append(line)

    # -- resolving candidates --------------------------------------------------------------

    def resolve_line(self, line: Line, combo: tuple[int, ...]):
        """The parts of one line for one combination of its choices: (part id, part, note) or Skip."""
        hit = line.cache.get(combo)
        if hit is None:
            hit = line.cache[combo] = self._build_line(line, combo)
        return hit

    def resolve(self, idx: tuple[int, ...]):
        """A candidate's parts as [(part id, part, note)] per line, or the first Skip."""
        out = []
        for line in self.lines:
            hit = self.resolve_line(line, tuple(idx[s] for s in line.slots))
            if isinstance(hit, Skip):
                return hit
            out.append(hit)
        return out

    def alternatives(self, idx: tuple[int, ...]) -> dict[str, str]:
        """The chosen alternative of every choice, by label ('' where its option was dropped)."""
        out = {c.label: c.alternatives[i] for c, i in zip(self.choices, idx)}
        for line in self.lines:
            for s in self._render(line, tuple(idx[s] for s in line.slots))[3]:
                out[self.choices[s].label] = ""
        return out

    def indices(self):
        """Every combination of choices, in order."""
        return itertools.product(*(range(len(c)) for c in self.choices))

    def _render(self, line: Line, combo: tuple[int, ...]):
        """The line's text with the chosen alternatives, and what was dropped from it."""
        chosen = {s: i for s, i in zip(line.slots, combo)}
        holes = []  # (start, end, replacement, source offset of the replacement)
        note = None
        fam_word = (
            str(line.family)
            if isinstance(line.family, lark.Token)
            else line.family.alternatives[chosen[line.family.index]]
            if line.family is not None
            else None
        )
        # an unknown family is left in, so that the spec front end reports it
        fam = family_named(fam_word) if fam_word else None
        dropped = []
        for opt in line.options:
            if (
                fam is not None
                and opt.key in BLOCK_OPTION
                and not BLOCK_OPTION[opt.key].applies(fam)
            ):
                holes.append((opt.start, opt.end, "", opt.start))
                dropped.append(opt.key)
        if dropped:
            note = (
                ", ".join(f"`{k}=`" for k in dropped)
                + f" means nothing for {fam.value} blocks; dropped"
            )
        unused = []
        for s in line.slots:
            ch = self.choices[s]
            if any(h[0] <= ch.start < h[1] for h in holes):
                unused.append(s)
                continue  # inside a dropped option
            i = chosen[s]
            holes.append((ch.start, ch.end, ch.alternatives[i], ch.starts[i]))
        holes.sort()
        pieces, segments, pos, out = [], [], line.start, 0
        for start, end, text, src in holes:
            pieces.append(self.source[pos:start])
            segments.append((out, pos, start - pos))
            out += start - pos
            pieces.append(text)
            segments.append((out, src, len(text)))
            out += len(text)
            pos = end
        pieces.append(self.source[pos : line.end])
        segments.append((out, pos, line.end - pos))
        return "".join(pieces), segments, note, unused

    def _build_line(self, line: Line, combo: tuple[int, ...]):
        text, segments, note, _ = self._render(line, combo)
        # The rendered line comes first, then the least the spec front end needs to build it.
        filler = {
            "network": "network candidate",
            "input": "input 3x8x224x224",
            "classes": "classes 1",
            "stages": "stages simple x [1]",
        }
        filler.pop(line.kind, None)
        if line.kind == "stage":
            filler.pop("stages")
        mini = text + "\n" + "\n".join(filler.values()) + "\n"
        try:
            net, _ = build(parse_tree(mini))
        except CsnError as err:
            return Skip(err.message, self._relocate(err, line, segments))
        part = {
            "input": lambda: net.input,
            "classes": lambda: net.classes,
            "norm": lambda: net.norm,
            "stem": lambda: net.stem,
            "head": lambda: net.head,
            "stages": lambda: net.stages,
            "stage": lambda: net.stages[:1],
        }[line.kind]()
        pid = self._interned.setdefault((line.kind, part), len(self._interned))
        return pid, part, note

    def _relocate(self, err: CsnError, line: Line, segments) -> CsnError:
        """Point an error in a rendered line back at the space file."""
        span = None
        if err.span is not None and err.span.line == 1:
            col = err.span.column - 1
            for out, src, length in reversed(segments):
                if out <= col:
                    off = src + min(col - out, max(length - 1, 0))
                    line_no = self.source.count("\n", 0, off) + 1
                    column = off - (self.source.rfind("\n", 0, off) + 1) + 1
                    span = Span(line_no, column, err.span.length)
                    break
        return self.error(err.message, span or Span(line.line, 1), err.hint)

    def _validate_lines(self) -> None:
        """Report alternatives that no combination of their line accepts, before any search."""
        for line in self.lines:
            sizes = [len(self.choices[s]) for s in line.slots]
            n = 1
            for size in sizes:
                n *= size
            if n > EAGER_LINE_COMBOS:
                continue
            results = {c: self.resolve_line(line, c) for c in itertools.product(*map(range, sizes))}
            if all(isinstance(r, Skip) for r in results.values()):
                raise next(iter(results.values())).error
            for pos, s in enumerate(line.slots):
                ch = self.choices[s]
                for i in range(len(ch)):
                    fails = [r for c, r in results.items() if c[pos] == i]
                    if all(isinstance(r, Skip) for r in fails):
                        err = fails[0].error
                        raise self.error(
                            f"the alternative '{ch.alternatives[i]}' is never valid here: {err.message}",
                            ch.spans[i],
                            hint=err.hint,
                        )


def load_space(path) -> Space:
    """Read and check a space file."""
    return Space(read_spec(path, "space"), str(path))


def parse_space(text: str, filename: str | None = None) -> Space:
    return Space(text, filename)


# -- syntax ----------------------------------------------------------------------------------


def _char_hint(char: str, expected) -> str | None:
    if char in "=!" and "CMP" in expected:
        return "constraints compare with <=, <, >= or >, e.g. `require flops <= 30G`"
    if char in "{}()":
        return "choices are written choose(a, b, c); lists use square brackets"
    return None


def _token_hint(tok, expected, previous) -> str | None:
    if tok.type == "NAME" and "SPACE" in expected:
        if str(tok) == "network":
            return "a space file names itself with `space NAME`; its candidates take that name"
        return did_you_mean(str(tok), STATEMENTS) or "each line starts with one of: " + ", ".join(
            STATEMENTS
        )
    if "TIMES" in expected and tok.type in ("LSQB", "INT", "CHOOSE"):
        return "write 'x' before the block counts, e.g. `stages bottleneck x [3,4,6,3]`"
    if "EQUALS" in expected:
        return "options are written key=value, e.g. g=choose(2,4)"
    if "CMP" in expected:
        return "constraints read `require METRIC OP LIMIT`, e.g. `require flops <= 30G`"
    return None


SPACE_LANGUAGE = Language.of(
    STATEMENTS,
    {
        "CHOOSE": "'choose'",
        "LPAR": "'('",
        "RPAR": "')'",
        "SLASH": "'/'",
        "CMP": "a comparison (<=, <, >=, >)",
    },
    statement_start=frozenset({"SPACE", "INPUT", "STAGES", "REQUIRE"}),
    char_hints=(_char_hint,),
    token_hints=(_token_hint,),
)


# -- tree helpers ----------------------------------------------------------------------------


def _is_punct(node) -> bool:
    return isinstance(node, lark.Token) and node.type in (
        "LSQB",
        "RSQB",
        "COMMA",
        "LPAR",
        "RPAR",
        "CHOOSE",
        "SLASH",
    )


def _first_choice(node):
    if isinstance(node, lark.Tree):
        if node.data == "choice":
            return node
        for child in node.children:
            found = _first_choice(child)
            if found is not None:
                return found
    return None


def _start(node) -> int:
    return node.start_pos if isinstance(node, lark.Token) else node.meta.start_pos


def _end(node) -> int:
    return node.end_pos if isinstance(node, lark.Token) else node.meta.end_pos


def _span(node) -> Span:
    if isinstance(node, lark.Token):
        return Span.of(node)
    return Span(node.meta.line, node.meta.column, max(1, node.meta.end_pos - node.meta.start_pos))


def normalise_reason(message: str) -> str:
    """A skip reason with its numbers blanked, so that like reasons are counted together."""
    return re.sub(r"\d+", "N", message)
