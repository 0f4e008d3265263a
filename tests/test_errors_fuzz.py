"""Mutated specs: whatever the text, `csnspec.parse` returns a network or raises CsnError (any
other exception is a bug). Of an error it asserts a position inside the text, the quoted line
being the line that position is on, no raw control character, a bounded length and no parser
internals; of an accepted spec, that it analyses and round-trips through `fmt`, and (a few per
run) that it compiles for both backends with the output shape and parameter count of `stats`.

Mutants per run: 300 of the shipped specs, 100 of random specs, 100 token soups and 3 compiled
accepted mutants in the ci profile; 5,000 / 1,666 / 1,666 / 50 with HYPOTHESIS_PROFILE=thorough.
Examples are fresh every run: the seed is printed (see conftest.py).
"""

from __future__ import annotations

import re

import pytest
from conftest import SPECS
from hypothesis import assume, given, reject, settings
from hypothesis import strategies as st
from strategies import networks

import csnspec
from csnspec.errors import escaped, normalize_newlines, source_lines

SEEDS = [p.read_text(encoding="utf-8") for p in SPECS]
SCALE = settings().max_examples * 10  # 300 mutants in the ci profile, 5000 when thorough

# Characters and tokens a mutation may insert: the language's own, near-misses, and hostile ones.
CHARS = list("x[],=#-+./0123456789 \t\n\r:;(){}\"'`\\$") + ["\u0435", "\u00a0", "\x00", "\u200b"]
# what other tools call line breaks (issue 14 item 4), and an escape sequence (item 5)
CHARS += ["\f", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r\n", "\x1b[2J"]
TOKENS = [
    "network",
    "input",
    "classes",
    "norm",
    "stem",
    "stages",
    "stage",
    "head",
    "x",
    "none",
    "simple",
    "simple-G",
    "simple-D",
    "bottleneck",
    "bottleneck-G",
    "bottleneck-D",
    "bottleneck-DG",
    "bottleneck-IP",
    "ir-csn",
    "ip-csn",
    "batchnorm",
    "conv",
    "maxpool",
    "avgpool",
    "dropout",
    "fc",
    "g=",
    "g=4",
    "g=3",
    "g=0",
    "expansion=",
    "expansion=1",
    "stride-at=first",
    "factorize=2+1d",
    "factorize=3d",
    "factorize=1+2d",
    "mid=matched",
    "mid=matched-block",
    "mid=out",
    "kernel-a=3x1x1/1x1x1",
    "kernel-b=1x3x3",
    "kernel-a=[3x1x1,1x1x1/3x1x1]",
    "kernel-b=0x3x3",
    "/",
    "/1x1x1",
    "pool=2x1x1",
    "pools=[2x1x1,none]",
    "pool=none",
    "ip-relu=on",
    "project=off",
    "x3d",
    "se=0.0625",
    "se=0",
    "se=1.5",
    "act-b=swish",
    "act-b=relu",
    "expansion=2.25",
    "groups=24",
    "groups=3",
    "norm=off",
    "conv 1x1x1 out=8",
    "conv 1x1x1 out=8 norm=off",
    "width=",
    "width=8",
    "widths=[8]",
    "strides=[2x2x2]",
    "stride=2x2x2",
    "padding=0x0x0",
    "out=8",
    "eps=1e-3",
    "momentum=0.5",
    "0",
    "-1",
    "1",
    "7",
    "99999999999999999999",
    "9" * 5000,  # past Python's 4,300-digit int() limit (issue 14 item 2)
    "1e400",  # overflows to inf (issue 14 item 3)
    "2e308",
    "-1e400",
    "eps=1e400",
    "dropout 1e999",
    "n" * 300,  # a long name: messages must not echo it whole (issue 14 item 7)
    "2x2",
    "1x1x1",
    "3x7x7",
    "0x1x1",
    "1e-3",
    "0.5",
    "[",
    "]",
    "[]",
    "[1,2]",
    ",",
    "=",
    "\n",
    "#",
    "class",
    "__import__",
    "None",
    "stem maxpool 1x3x3",  # a stem of max-pools only (issue 14 item 1)
]
INTERNAL = re.compile(r"__ANON|_NL\b|\$END|Token\(|Tree\(|\blark\b|LSQB|RSQB|\bDIMS\b|\bSLASH\b")


def _mutate(draw, text: str) -> str:
    n = len(text)
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "char", "token", "swap-words"]))
    i = draw(st.integers(0, n))
    if kind == "delete":
        return text[:i] + text[i + draw(st.integers(1, 12)) :]
    if kind == "duplicate":
        j = min(n, i + draw(st.integers(1, 20)))
        return text[:j] + text[i:j] + text[j:]
    if kind == "swap" and n >= 2:
        a, b = sorted((i % n, draw(st.integers(0, n - 1))))
        return text[:a] + text[b] + text[a + 1 : b] + text[a] + text[b + 1 :]
    if kind == "char":
        return text[:i] + draw(st.sampled_from(CHARS)) + text[i:]
    if kind == "swap-words":
        words = re.split(r"(\s+)", text)
        if len(words) >= 3:
            a, b = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
            words[a], words[b] = words[b], words[a]
        return "".join(words)
    return text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]


@st.composite
def mutants(draw, seeds, most: int = 4):
    text = draw(seeds)
    for _ in range(draw(st.integers(1, most))):
        text = _mutate(draw, text)
    return text


CARET = re.compile(r"    ( *)(\^+)\Z")


def check_position(err: csnspec.CsnError, text: str, message: str) -> None:
    """The error has a position, inside the text, and quotes the very line it is about."""
    assert err.span is not None, message  # issue 14 item 6: every spec error has a position
    lines = source_lines(normalize_newlines(text))
    line, column = err.span.line, err.span.column
    assert 1 <= line <= len(lines), message
    assert 1 <= column <= len(lines[line - 1]) + 1, message
    shown = message.splitlines()
    assert len(shown) >= 3, message
    quoted, caret = shown[1], CARET.match(shown[2])
    assert caret, message
    # the quoted line is the error's line (escaped, and cut around the caret when long)
    source_line = escaped(lines[line - 1]).expandtabs(1)
    body = quoted[4:].removeprefix("...").removesuffix("...")
    assert body in source_line, message
    assert len(message) < 2000, message  # bounded echo, whatever the input


def check(text: str) -> None:
    try:
        net = csnspec.parse(text, "m.csn")
    except csnspec.CsnError as err:
        message = str(err)  # rendering must not fail either
        assert message.startswith("m.csn"), message
        assert not INTERNAL.search(message), message
        # control characters are shown escaped (issue 14 item 5)
        assert all(c.isprintable() or c == "\n" for c in message), ascii(message)
        check_position(err, text, message)
        return
    # accepted: it must also analyse, print and read back as the same network
    csnspec.stats(net)
    assert csnspec.parse(csnspec.format_spec(net)) == net


@settings(max_examples=SCALE)
@given(mutants(st.sampled_from(SEEDS)))
def test_mutated_library_specs(text):
    check(text)


@settings(max_examples=SCALE // 3)
@given(mutants(networks(small=False).map(csnspec.format_spec)))
def test_mutated_random_specs(text):
    check(text)


@settings(max_examples=SCALE // 3)
@given(st.lists(st.sampled_from(CHARS + TOKENS + [" "] * 8), max_size=40).map("".join))
def test_token_soup(text):
    check(text)


# -- every accepted spec compiles, for both backends -------------------------------------------


def compiles_for_torch(low, report) -> None:
    """The torch module imports, builds on the meta device, and has the IR's params and shape."""
    import torch
    from torch import nn

    from csnspec.backends import load_module

    module = load_module(low, "torch")
    with torch.device("meta"):
        model = module.build().eval()
    counted = {nn.Conv3d: 0, nn.Linear: 0, nn.BatchNorm3d: 0}
    for layer in model.modules():
        for kind in counted:  # DepthwiseConv3d is an nn.Conv3d
            if isinstance(layer, kind):
                counted[kind] += sum(p.numel() for p in layer.parameters(recurse=False))
    params = counted[nn.Conv3d] + counted[nn.Linear]
    assert (params, counted[nn.BatchNorm3d]) == (report.total.params, report.total.bn_params)
    with torch.no_grad():
        out = model(torch.empty(2, *low.input_shape, device="meta"))
    assert tuple(out.shape) == (2, *low.output_shape)


def compiles_for_flax(low, report) -> None:
    """The flax module imports, builds abstractly, and has the IR's params and output shape."""
    import jax
    from flax import nnx

    from csnspec.backends import load_module

    module = load_module(low, "flax")
    model = nnx.eval_shape(module.build)
    params = sum(v.get_raw_value().size for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert params == report.total.params + report.total.bn_params
    model.eval()
    x = jax.ShapeDtypeStruct((2, *low.input_shape[1:], low.input_shape[0]), "float32")
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, *low.output_shape)


@settings(max_examples=max(3, SCALE // 100))  # 3 accepted mutants in ci, 50 when thorough
@given(mutants(networks(small=True).map(csnspec.format_spec), most=1))
def test_accepted_mutants_compile_for_both_backends(text):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    try:
        net = csnspec.parse(text)
    except csnspec.CsnError:
        reject()
    low = csnspec.lower(net)
    assume(low.input_shape[1] * low.input_shape[2] * low.input_shape[3] <= 8 * 64 * 64)
    report = csnspec.analyse(low)
    compiles_for_torch(low, report)
    compiles_for_flax(low, report)


def test_a_stem_of_max_pools_compiles_for_flax():
    """Issue 14 item 1: a stem of max-pools only once gave flax an empty `__init__`."""
    pytest.importorskip("flax")
    net = csnspec.parse(
        "network pools\ninput 3x4x32x32\nclasses 5\nstem maxpool 1x3x3\nstages simple x [1]\n"
    )
    low = csnspec.lower(net)
    report = csnspec.analyse(low)
    compiles_for_torch(low, report)
    compiles_for_flax(low, report)


def test_a_factorized_depthwise_network_counts_its_depthwise_convs():
    """A fuzz find: depthwise convs (an nn.Conv3d subclass) must be counted like any conv."""
    pytest.importorskip("flax")
    net = csnspec.parse(
        "network fz\ninput 3x4x32x32\nclasses 5\nstem conv 1x3x3 out=8\n"
        "stages bottleneck-D factorize=2+1d expansion=1 x [1,1,1,1]\n"
    )
    low = csnspec.lower(net)
    report = csnspec.analyse(low)
    compiles_for_torch(low, report)
    compiles_for_flax(low, report)
