"""Parse tree to spec IR: reads each statement, fills in the ResNet3D defaults of Table 1,
and checks option meanings, pointing every error at the token that caused it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import lark
from pydantic import ValidationError

from .errors import CsnError, Span, did_you_mean
from .spec import (
    BLOCK_OPTION,
    BLOCK_OPTIONS,
    CYCLE_KINDS,
    FAMILY_NAMES,
    MAX_BLOCKS,
    MAX_CYCLE,
    Family,
    Network,
    family_named,
)

# Table 1's ResNet3D template: what a `stages` line and a missing stem or head mean.
DEFAULT_STEM = (
    {"kind": "conv", "kernel": (3, 7, 7), "out": 64, "stride": (1, 2, 2)},
    {"kind": "maxpool", "kernel": (1, 3, 3), "stride": (1, 2, 2)},
)
DEFAULT_WIDTH = 64
DEFAULT_STAGE_STRIDE = (2, 2, 2)  # first block of stages 2..n
BOOLEANS = {"on": True, "off": False, "true": True, "false": False}

# Options of each statement: name -> kind of value.
BLOCK_OPTION_KINDS = {opt.key: opt.kind for opt in BLOCK_OPTIONS}
# On a `stages` line an alternating option also takes one value (or alternation) per stage.
PER_STAGE = "-per-stage"
STAGES_OPTIONS = {
    **{
        key: kind + PER_STAGE if kind in CYCLE_KINDS else kind
        for key, kind in BLOCK_OPTION_KINDS.items()
    },
    "widths": "int-list",
    "strides": "dims-list",
    "pools": "pool-list",
}
STAGE_OPTIONS = {**BLOCK_OPTION_KINDS, "width": "int", "stride": "dims", "pool": "pool"}
CYCLE_ELEMENT = {"dims-cycle": "dims", "number-cycle": "number"}
NORM_OPTIONS = {"eps": "number", "momentum": "number"}
STEM_OPTIONS = {
    "conv": {"out": "int", "stride": "dims", "padding": "dims", "groups": "int", "norm": "bool"},
    "maxpool": {"stride": "dims", "padding": "dims"},
}
HEAD_LAYERS = ("conv", "avgpool", "dropout", "fc")
HEAD_CONV_OPTIONS = {"out": "int", "norm": "bool"}
HEAD_ORDER = "the head is `[conv ...,] avgpool[, conv ...][, dropout P], fc` in that order"


@dataclass
class Opt:
    """An option as written: its name token, value, and the token(s) of the value."""

    key: lark.Token
    value: object
    tokens: list  # one token, or one per list element (the first token of an alternation)
    per_stage: bool = False  # a list of one value per stage (an alternating option)


def build(tree: lark.Tree) -> tuple[Network, dict[str, Span]]:
    """Build the spec IR from a parse tree (syntax already checked).

    Returns the network and where each of its values came from in the source, keyed by field
    path ("stages.2.groups"): `csnspec.lowering.lower` points its errors at those tokens.
    """
    spans: dict[str, Span] = {}
    seen: dict[str, lark.Token] = {}
    data: dict = {}
    stage_trees = []
    for statement in tree.children:
        keyword = statement.children[0]
        if statement.data != "stage":
            if statement.data in seen:
                prev = seen[statement.data]
                raise CsnError(
                    f"duplicate `{statement.data}` line (first at line {prev.line})",
                    Span.of(keyword),
                    hint="each statement appears once, except `stage`",
                )
            seen[statement.data] = keyword
        if statement.data == "network":
            data["name"] = str(statement.children[1])
            spans["name"] = Span.of(statement.children[1])
        elif statement.data == "input":
            data["input"] = _dims(
                statement.children[1], 4, "the input clip (channels x frames x height x width)"
            )
            spans["input"] = Span.of(statement.children[1])
        elif statement.data == "classes":
            data["classes"] = whole_number(statement.children[1])
            spans["classes"] = Span.of(statement.children[1])
        elif statement.data == "norm":
            data["norm"] = _norm(statement, spans)
        elif statement.data == "stem":
            data["stem"] = _stem(statement, spans)
        elif statement.data == "head":
            data["head"] = _head(statement, spans)
        elif statement.data in ("stages", "stage"):
            stage_trees.append(statement)

    anchor = Span(1, 1)  # a missing statement is reported at the start of the file
    for required, key, example in (
        ("network", "name", "network my-net"),
        ("input", "input", "input 3x8x224x224"),
        ("classes", "classes", "classes 400"),
    ):
        if key not in data:
            raise CsnError(
                f"the spec has no `{required}` line", anchor, hint=f"add a line like `{example}`"
            )
    data["stages"] = _stages(stage_trees, spans, anchor)
    data.setdefault("stem", [_fill_padding(dict(layer)) for layer in DEFAULT_STEM])
    return validated(data, spans), spans


def locate(spans: dict[str, Span], fields) -> Span | None:
    """Where the first of `fields` written in the source is, else the nearest enclosing field
    of the last one ("stages.2.width" -> "stages.2")."""
    for field in fields:
        if field in spans:
            return spans[field]
    field = fields[-1] if fields else ""
    while "." in field:
        field = field.rsplit(".", 1)[0]
        if field in spans:
            return spans[field]
    return None


def validated(data: dict, spans: dict) -> Network:
    """Validate with pydantic, turning its errors into CsnErrors at the offending token."""
    try:
        return Network.model_validate(data)
    except ValidationError as err:
        raise explain(err, spans) from None


def explain(err: ValidationError, spans: dict) -> CsnError:
    """A pydantic error in words, at the token its field came from (where `spans` knows it)."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    loc = [p for p in loc if p not in ("conv", "maxpool")]  # discriminated-union tags
    kind, ctx, value = first["type"], first.get("ctx") or {}, first.get("input")
    if kind == "value_error" and len(loc) == 2 and loc[0] == "stem":
        loc.append("padding")  # the stem's only cross-field rule is about padding
    span = None
    for n in range(len(loc), 0, -1):
        span = spans.get(".".join(loc[:n]))
        if span is not None:
            break
    what = ".".join(loc) or "spec"
    if kind == "greater_than" and ctx.get("gt") == 0:
        msg = f"{_field_words(loc)} must be positive, got {value}"
    elif kind == "greater_than_equal":
        msg = f"{_field_words(loc)} must be at least {ctx.get('ge')}, got {value}"
    elif kind == "less_than":
        msg = f"{_field_words(loc)} must be below {ctx.get('lt')}, got {value}"
    elif kind == "less_than_equal":
        msg = f"{_field_words(loc)} must be at most {ctx.get('le')}, got {value}"
    elif kind == "value_error":
        msg = str(ctx.get("error", first["msg"]))
    else:
        msg = f"{what}: {first['msg']}"
    return CsnError(msg, span)


_FIELD_WORDS = {
    "input": "every input size",
    "classes": "the class count",
    "blocks": "the block count",
    "width": "the width",
    "groups": "g",
    "stride": "every stride",
    "kernel": "every kernel size",
    "kernel_a": "every kernel-a size",
    "kernel_b": "every kernel-b size",
    "pool": "every pool size",
    "padding": "every padding",
    "out": "out",
    "window": "every avgpool window size",
    "dropout": "the dropout rate",
}


def _field_words(loc: list[str]) -> str:
    for part in reversed(loc):
        if not part.isdigit():
            return _FIELD_WORDS.get(part, part)
    return "value"


# -- values -------------------------------------------------------------------------------

# Every size and count is far below this many digits (the largest limit, MAX_CLASSES, has 7);
# longer numbers are refused at their token before Python's int() (which stops at 4,300
# digits with a ValueError) is asked to read them.
MAX_DIGITS = 30


def whole_number(tok: lark.Token, text: str | None = None) -> int:
    """The integer a token (or one part of it, `text`) writes, refused when absurdly long."""
    text = str(tok) if text is None else text
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise CsnError(
            f"a number of {len(text.lstrip('-'))} digits is too large here",
            Span.of(tok),
            hint="sizes and counts are at most a few million",
        )
    return int(text)


def finite_number(tok: lark.Token, what: str) -> float:
    """The float a number token writes, refused when it overflows to infinity (`1e400`)."""
    value = float(str(tok)) if tok.type == "FLOAT" else float(whole_number(tok))
    if not math.isfinite(value):
        raise CsnError(
            f"{what} must be a finite number, got '{tok}'",
            Span.of(tok),
            hint="numbers beyond about 1.8e308 do not exist as floats",
        )
    return value


def _dims(tok: lark.Token, n: int, what: str) -> tuple[int, ...]:
    if tok.type != "DIMS":
        raise CsnError(
            f"expected {what}, got '{tok}'", Span.of(tok), hint=f"write {n} sizes joined by 'x'"
        )
    parts = tuple(whole_number(tok, p) for p in str(tok).split("x"))
    if len(parts) != n:
        example = "3x8x224x224" if n == 4 else "1x2x2"
        raise CsnError(
            f"{what} takes {n} sizes, got {len(parts)} in '{tok}'",
            Span.of(tok),
            hint=f"e.g. {example}",
        )
    return parts


def _first_token(node) -> lark.Token:
    return node if isinstance(node, lark.Token) else _first_token(node.children[0])


def _cycle(node, kind, key: lark.Token) -> Opt:
    """An alternating option's value: one value, or `a/b/...`, as a tuple cycled over blocks."""
    name = str(key)
    if isinstance(node, lark.Tree) and node.data == "list":
        raise CsnError(
            f"`{name}` takes one value or an alternation like 3x1x1/1x1x1, not a list",
            Span.of(key),
            hint="a list of one value per stage goes on a `stages` line",
        )
    items = node.children[::2] if isinstance(node, lark.Tree) else [node]
    if len(items) > MAX_CYCLE:
        raise CsnError(
            f"`{name}` alternates {len(items)} values; csnspec takes at most {MAX_CYCLE}",
            Span.of(items[0]),
            hint="an alternation is the repeating pattern, e.g. 3x1x1/1x1x1",
        )
    elem = CYCLE_ELEMENT[kind]
    return Opt(key, tuple(_value(i, elem, key).value for i in items), [items[0]])


def _pool(tok, key: lark.Token):
    if isinstance(tok, lark.Token) and str(tok) == "none":
        return None
    if not isinstance(tok, lark.Token) or tok.type != "DIMS":
        raise CsnError(
            f"`{key}` takes a pool size like 2x1x1, or none, got '{_first_token(tok)}'",
            Span.of(_first_token(tok)),
            hint="the max-pool after a stage has kernel = stride = the size, e.g. pool=2x1x1",
        )
    return _dims(tok, 3, f"`{key}` (time x height x width)")


def _is_list(node) -> bool:
    return isinstance(node, lark.Tree) and node.data == "list"


def _value(node, kind, key: lark.Token) -> Opt:
    name = str(key)
    per_stage = isinstance(kind, str) and kind.endswith(PER_STAGE)
    if kind in CYCLE_KINDS or (per_stage and not _is_list(node)):
        return _cycle(node, kind.removesuffix(PER_STAGE), key)
    if isinstance(node, lark.Tree) and node.data == "cycle":
        raise CsnError(
            f"`{name}` takes a single value; only "
            + ", ".join(o.key for o in BLOCK_OPTIONS if o.cycles)
            + " alternate over blocks with '/'",
            Span.of(node.children[1]),
            hint=f"write one value, e.g. {name}={node.children[0]}",
        )
    if kind == "pool":
        if isinstance(node, lark.Tree):
            raise CsnError(f"`{name}` takes one pool size, not a list", Span.of(key))
        return Opt(key, _pool(node, key), [node])
    if per_stage:  # one value per stage
        base = kind.removesuffix(PER_STAGE)
        items = [c for c in node.children if isinstance(c, lark.Tree) or c.type != "COMMA"]
        items = items[1:-1]
        if not items:
            raise CsnError(f"`{name}` needs at least one value", Span.of(key))
        for item in items:
            if isinstance(item, lark.Tree) and item.data == "list":
                raise CsnError(
                    f"`{name}` takes one value or alternation per stage, not a nested list",
                    Span.of(_first_token(item)),
                )
        values = [_cycle(i, base, key).value for i in items]
        return Opt(key, values, [_first_token(i) for i in items], per_stage=True)
    if isinstance(node, lark.Tree):  # a list
        items = [
            c
            for c in node.children
            if isinstance(c, lark.Tree) or c.type not in ("LSQB", "RSQB", "COMMA")
        ]
        if kind not in ("int-list", "dims-list", "pool-list"):
            raise CsnError(f"`{name}` takes a single value, not a list", Span.of(key))
        if not items:
            raise CsnError(f"`{name}` needs at least one value", Span.of(key))
        if kind == "pool-list":
            return Opt(key, [_pool(i, key) for i in items], [_first_token(i) for i in items])
        elem = "int" if kind == "int-list" else "dims"
        for item in items:
            if isinstance(item, lark.Tree):
                raise CsnError(
                    f"`{name}` takes one plain value per stage",
                    Span.of(_first_token(item)),
                    hint="only "
                    + ", ".join(o.key for o in BLOCK_OPTIONS if o.cycles)
                    + " alternate",
                )
        return Opt(key, [_value(i, elem, key).value for i in items], items)
    tok = node
    span = Span.of(tok)
    if kind == "int":
        if tok.type != "INT":
            raise CsnError(f"`{name}` takes a whole number, got '{tok}'", span)
        return Opt(key, whole_number(tok), [tok])
    if kind == "number":
        if tok.type not in ("INT", "FLOAT"):
            raise CsnError(f"`{name}` takes a number, got '{tok}'", span)
        return Opt(key, finite_number(tok, f"`{name}`"), [tok])
    if kind == "dims":
        return Opt(key, _dims(tok, 3, f"`{name}` (time x height x width)"), [tok])
    if kind == "number-cycle":  # one value; alternation (`a/b`) is read by the grammar's `/`
        return Opt(key, (_value(tok, "number", key).value,), [tok])
    if kind == "bool":
        word = str(tok).lower()
        if word not in BOOLEANS:
            raise CsnError(f"`{name}` takes on or off, got '{tok}'", span)
        return Opt(key, BOOLEANS[word], [tok])
    if kind in ("int-list", "dims-list", "pool-list"):
        example = {
            "int-list": "[64,128,256,512]",
            "dims-list": "[1x1x1,2x2x2,2x2x2,2x2x2]",
            "pool-list": "[2x1x1,none,none,none]",
        }[kind]
        raise CsnError(f"`{name}` takes a list, e.g. {name}={example}", span)
    # a choice among words
    if str(tok) not in kind:
        raise CsnError(
            f"`{name}` takes one of {', '.join(kind)}, got '{tok}'",
            span,
            hint=did_you_mean(str(tok), kind),
        )
    return Opt(key, str(tok), [tok])


def _options(nodes, allowed: dict, where: str) -> dict[str, Opt]:
    out: dict[str, Opt] = {}
    for node in nodes:
        key, _, value = node.children
        name = str(key)
        if name not in allowed:
            hint = did_you_mean(name, allowed)
            if hint is None and allowed:
                hint = f"{where} takes: " + ", ".join(allowed)
            raise CsnError(f"unknown option `{name}` for {where}", Span.of(key), hint=hint)
        if name in out:
            raise CsnError(f"duplicate option `{name}`", Span.of(key), hint="give each option once")
        out[name] = _value(value, allowed[name], key)
    return out


def _options_of(tree: lark.Tree) -> list:
    return [c for c in tree.children if isinstance(c, lark.Tree) and c.data == "option"]


# -- statements ----------------------------------------------------------------------------


def _norm(statement: lark.Tree, spans: dict) -> dict:
    kind = statement.children[1]
    if str(kind) != "batchnorm":
        raise CsnError(
            f"unknown norm '{kind}'",
            Span.of(kind),
            hint=did_you_mean(str(kind), ["batchnorm"]) or "csnspec supports `norm batchnorm`",
        )
    opts = _options(_options_of(statement), NORM_OPTIONS, "norm")
    out = {"kind": "batchnorm"}
    for key, opt in opts.items():
        out[key] = opt.value
        spans[f"norm.{key}"] = Span.of(opt.tokens[0])
    return out


def _fill_padding(layer: dict) -> dict:
    # 'same'-style padding for odd kernels, as every public CSN stem uses: (3,7,7) -> (1,3,3)
    layer.setdefault("padding", tuple(k // 2 for k in layer["kernel"]))
    return layer


def _layers(statement: lark.Tree):
    return [c for c in statement.children if isinstance(c, lark.Tree) and c.data == "layer"]


def _stem(statement: lark.Tree, spans: dict) -> list:
    layers = _layers(statement)
    if len(layers) == 1 and str(layers[0].children[0]) == "none" and len(layers[0].children) == 1:
        return []
    out = []
    for i, layer in enumerate(layers):
        kind = layer.children[0]
        if str(kind) not in STEM_OPTIONS:
            raise CsnError(
                f"unknown stem layer '{kind}'",
                Span.of(kind),
                hint=did_you_mean(str(kind), STEM_OPTIONS)
                or "the stem has `conv` and `maxpool` layers, or is `none`",
            )
        rest = [c for c in layer.children[1:] if isinstance(c, lark.Token)]
        if not rest or rest[0].type != "DIMS":
            raise CsnError(
                f"a stem {kind} needs its kernel size",
                Span.of(kind),
                hint=f"e.g. `{kind} {'3x7x7' if str(kind) == 'conv' else '1x3x3'}`",
            )
        item = {
            "kind": str(kind),
            "kernel": _dims(rest[0], 3, f"the {kind} kernel (time x height x width)"),
        }
        spans[f"stem.{i}"] = Span.of(kind)
        spans[f"stem.{i}.kernel"] = Span.of(rest[0])
        for key, opt in _options(
            _options_of(layer), STEM_OPTIONS[str(kind)], f"stem {kind}"
        ).items():
            item[key] = opt.value
            spans[f"stem.{i}.{key}"] = Span.of(opt.tokens[0])
        if item["kind"] == "conv":
            item.setdefault("out", 64)
        out.append(_fill_padding(item))
    return out


def _head(statement: lark.Tree, spans: dict) -> dict:
    head: dict = {"convs": [], "post_convs": []}
    order = []
    for layer in _layers(statement):
        kind = layer.children[0]
        name = str(kind)
        if name not in HEAD_LAYERS:
            raise CsnError(
                f"unknown head layer '{kind}'",
                Span.of(kind),
                hint=did_you_mean(name, HEAD_LAYERS) or HEAD_ORDER,
            )
        if name in order and name != "conv":
            raise CsnError(f"duplicate head layer '{kind}'", Span.of(kind))
        arg = next((c for c in layer.children[1:] if isinstance(c, lark.Token)), None)
        if name == "conv":
            where = "post_convs" if "avgpool" in order else "convs"
            head[where].append(
                _head_conv(layer, kind, arg, f"head.{where}.{len(head[where])}", spans)
            )
            order.append(name)
            continue
        if _options_of(layer):
            raise CsnError(
                f"head {kind} takes no options", Span.of(_options_of(layer)[0].children[0])
            )
        if name == "avgpool" and arg is not None:
            head["window"] = _dims(arg, 3, "the avgpool window (time x height x width)")
            spans["head.window"] = Span.of(arg)
        elif name == "dropout":
            if arg is None or arg.type not in ("INT", "FLOAT"):
                raise CsnError("dropout needs its rate, e.g. `dropout 0.5`", Span.of(kind))
            head["dropout"] = finite_number(arg, "the dropout rate")
            spans["head.dropout"] = Span.of(arg)
        elif arg is not None:
            raise CsnError(f"head {kind} takes no value", Span.of(arg))
        order.append(name)
        spans[f"head.{name}"] = Span.of(kind)
    # conv* avgpool conv* dropout? fc
    letters = "".join(name[0] for name in order)
    if not re.fullmatch(r"c*ac*d?f", letters):
        raise CsnError(
            HEAD_ORDER,
            Span.of(statement.children[0]),
            hint="every network ends with a pool and a fully-connected layer",
        )
    return head


def _head_conv(layer: lark.Tree, kind, arg, field: str, spans: dict) -> dict:
    """A head `conv TxHxW out=N [norm=off]`."""
    if arg is None or arg.type != "DIMS":
        raise CsnError(
            "a head conv needs its kernel size", Span.of(kind), hint="e.g. `conv 1x1x1 out=2048`"
        )
    conv = {"kernel": _dims(arg, 3, "the conv kernel (time x height x width)")}
    spans[field] = Span.of(kind)
    spans[f"{field}.kernel"] = Span.of(arg)
    opts = _options(_options_of(layer), HEAD_CONV_OPTIONS, "head conv")
    if "out" not in opts:
        raise CsnError(
            "a head conv needs its output width", Span.of(kind), hint="add e.g. `out=2048`"
        )
    for key, opt in opts.items():
        conv[key] = opt.value
        spans[f"{field}.{key}"] = Span.of(opt.tokens[0])
    return conv


def _family(tok: lark.Token) -> Family:
    family = family_named(str(tok))
    if family is None:
        raise CsnError(
            f"unknown block family '{tok}'",
            Span.of(tok),
            hint=did_you_mean(str(tok), FAMILY_NAMES) or "families: " + ", ".join(FAMILY_NAMES),
        )
    return family


def _stages(trees: list, spans: dict, anchor: Span) -> list:
    if not trees:
        raise CsnError(
            "the spec has no stages", anchor, hint="add e.g. `stages bottleneck-D x [3,4,6,3]`"
        )
    kinds = {t.data for t in trees}
    if kinds == {"stages", "stage"}:
        second = next(t for t in trees if t.data != trees[0].data)
        raise CsnError(
            "use either one `stages` line or `stage` lines, not both",
            Span.of(second.children[0]),
        )
    if kinds == {"stages"}:  # (a second `stages` line was refused as a duplicate statement)
        stages = _compact_stages(trees[0], spans)
    else:
        stages = [_explicit_stage(t, i, spans) for i, t in enumerate(trees)]
    total = sum(stage["blocks"] for stage in stages)
    # (a single count above the limit is reported at its own token by validation)
    if total > MAX_BLOCKS and all(stage["blocks"] <= MAX_BLOCKS for stage in stages):
        raise CsnError(
            f"the network has {total} blocks; csnspec takes at most {MAX_BLOCKS}",
            Span.of(trees[-1].children[0]),
        )
    return stages


def _split_stage_line(statement: lark.Tree):
    family_token = statement.children[1]
    times = next(c for c in statement.children if isinstance(c, lark.Token) and c.type == "TIMES")
    counts = statement.children[statement.children.index(times) + 1]
    return family_token, counts, _options_of(statement)


def _block_options(family: Family, family_token, opts: dict[str, Opt]) -> dict:
    """The Stage fields a line's block options set (defaults filled in)."""
    out = {}
    for option in BLOCK_OPTIONS:
        if option.key in opts and not option.applies(family):
            raise CsnError(
                f"`{option.key}=` means nothing for {family.value} blocks",
                Span.of(opts[option.key].key),
                hint=option.hint,
            )
    for option in BLOCK_OPTIONS:
        if not option.applies(family):
            continue
        if option.key in opts:
            out[option.field] = opts[option.key].value
        elif option.default_for(family) is None:
            raise CsnError(
                f"{family.value} needs {option.needs}",
                Span.of(family_token),
                hint=f"write e.g. `{family.value} {option.key}=4`",
            )
        else:
            out[option.field] = option.default_for(family)
    if out.get("mid", "out") != "out" and out.get("factorize") == "3d":
        raise CsnError(
            f"`mid={out['mid']}` is the width between factorized convs, but these convs are 3D",
            Span.of(opts["mid"].key),
            hint="add factorize=2+1d (or 1+2d), or leave out mid",
        )
    return out


def _compact_stages(statement: lark.Tree, spans: dict) -> list:
    family_token, counts, opt_nodes = _split_stage_line(statement)
    family = _family(family_token)
    opts = _options(opt_nodes, STAGES_OPTIONS, "a `stages` line")
    count_toks = [c for c in counts.children if c.type == "INT"]
    n = len(count_toks)
    if n > MAX_BLOCKS:  # refused before the default widths (64 * 2**i) grow without bound
        raise CsnError(
            f"the `stages` line lists {n} stages; csnspec takes at most {MAX_BLOCKS} blocks",
            Span.of(statement.children[0]),
        )
    block = _block_options(family, family_token, opts)
    per_stage = {k: opt for k, opt in opts.items() if opt.per_stage}
    if "pools" in opts:
        per_stage["pools"] = opts["pools"]
    for key, opt in per_stage.items():
        if len(opt.value) != n:
            raise CsnError(
                f"`{key}` has {len(opt.value)} values for {n} stages",
                Span.of(opt.key),
                hint="give one value per stage, or one value for every stage",
            )
    widths = opts["widths"].value if "widths" in opts else [DEFAULT_WIDTH * 2**i for i in range(n)]
    strides = (
        opts["strides"].value
        if "strides" in opts
        else [(1, 1, 1)] + [DEFAULT_STAGE_STRIDE] * (n - 1)
    )
    for key, values in (("widths", widths), ("strides", strides)):
        if key in opts and len(values) != n:
            raise CsnError(
                f"`{key}` has {len(values)} values for {n} stages",
                Span.of(opts[key].key),
                hint="give one value per stage",
            )
    stages = []
    for i in range(n):
        stages.append(
            {
                "family": family,
                "blocks": whole_number(count_toks[i]),
                "width": widths[i],
                "stride": tuple(strides[i]),
                **block,
                **{
                    ("pool" if key == "pools" else BLOCK_OPTION[key].field): opt.value[i]
                    for key, opt in per_stage.items()
                },
            }
        )
        spans[f"stages.{i}"] = spans[f"stages.{i}.family"] = Span.of(family_token)
        spans[f"stages.{i}.blocks"] = Span.of(count_toks[i])
        for key, opt in opts.items():
            if key in ("widths", "strides", "pools"):
                spans[f"stages.{i}.{key[:-1]}"] = Span.of(opt.tokens[i])
            elif opt.per_stage:
                spans[f"stages.{i}.{BLOCK_OPTION[key].field}"] = Span.of(opt.tokens[i])
            else:
                spans[f"stages.{i}.{BLOCK_OPTION[key].field}"] = Span.of(opt.tokens[0])
        spans.setdefault(f"stages.{i}.width", Span.of(family_token))
        spans.setdefault(f"stages.{i}.stride", Span.of(family_token))
    return stages


def _explicit_stage(statement: lark.Tree, i: int, spans: dict) -> dict:
    family_token, count, opt_nodes = _split_stage_line(statement)
    family = _family(family_token)
    opts = _options(opt_nodes, STAGE_OPTIONS, "a `stage` line")
    if "width" not in opts:
        raise CsnError(
            "a `stage` line needs its width", Span.of(family_token), hint="add e.g. `width=64`"
        )
    stage = {
        "family": family,
        "blocks": whole_number(count),
        "width": opts["width"].value,
        "stride": opts["stride"].value if "stride" in opts else (1, 1, 1),
        "pool": opts["pool"].value if "pool" in opts else None,
        **_block_options(family, family_token, opts),
    }
    spans[f"stages.{i}"] = spans[f"stages.{i}.family"] = Span.of(family_token)
    spans[f"stages.{i}.blocks"] = Span.of(count)
    for key, opt in opts.items():
        field = BLOCK_OPTION[key].field if key in BLOCK_OPTION else key
        spans[f"stages.{i}.{field}"] = Span.of(opt.tokens[0])
    spans.setdefault(f"stages.{i}.stride", Span.of(family_token))
    return stage
