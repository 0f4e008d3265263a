"""Design spaces: parsing, expansion (collapse, skips, de-duplication) and errors in words."""

from __future__ import annotations

import pytest

import csnspec
from csnspec.errors import CsnError
from csnspec.search.expand import expand
from csnspec.search.score import canonical
from csnspec.search.space import load_space, parse_space
from tests.conftest import ROOT

ISSUE_SPACE = """\
# the bottleneck-X-16 family of Figure 6b
space bottleneck-x-16
input 3x8x224x224
classes 400
stages choose(bottleneck, bottleneck-G, bottleneck-D, bottleneck-DG) g=choose(2,4,8,16,32) x [3,4,6,3]
require flops <= 30G
"""


def head(text: str) -> str:
    return "space s\ninput 3x8x112x112\nclasses 10\n" + text


def error_of(text: str) -> CsnError:
    with pytest.raises(CsnError) as info:
        expand(parse_space(text, "bad.space"))
    return info.value


def test_issue_space_expands_as_its_comment_says():
    space = parse_space(ISSUE_SPACE, "x.space")
    assert space.raw_size == 20
    ex = expand(space)
    texts = [canonical(space, c) for c in ex.candidates]
    stages = [t.splitlines()[-1] for t in texts]
    # g collapses for bottleneck and bottleneck-D: one candidate each, not five, and no error
    assert stages.count("stages bottleneck x [3,4,6,3]") == 1
    assert stages.count("stages bottleneck-D x [3,4,6,3]") == 1
    assert sum(s.startswith("stages bottleneck-G g=") for s in stages) == 5
    assert sum(s.startswith("stages bottleneck-DG g=") for s in stages) == 5
    assert len(texts) == len(set(texts)) == 12
    dup = {reason: n for (kind, reason), n in ex.tally.reasons.items() if kind == "duplicate"}
    assert sum(dup.values()) == 8
    assert any("`g=` means nothing for bottleneck blocks" in r for r in dup)
    # every candidate is the printer's canonical text, and reads back to the same network
    for text in texts:
        assert csnspec.format_spec(csnspec.parse(text)) == text
        assert text.startswith("network bottleneck-x-16\n")
    for c in ex.candidates:
        assert c.cost.flops <= 30e9


def test_constraint_rejects_and_counts():
    ex = expand(parse_space(ISSUE_SPACE.replace("30G", "12G"), "x.space"))
    assert all(c.cost.flops <= 12e9 for c in ex.candidates)
    rejected = sum(n for (kind, _), n in ex.tally.reasons.items() if kind == "rejected")
    assert rejected == 4  # bottleneck (29.5 GFLOPs) and bottleneck-G with g=2, 4, 8 (12.8)
    assert len(ex.candidates) == 12 - rejected


@pytest.mark.parametrize(
    "line, metric, op, limit",
    [
        ("require params < 2.5M", "params", "<", 2.5e6),
        ("require interactions >= 1G", "interactions", ">=", 1e9),
        ("require activations > 10K", "activations", ">", 1e4),
        ("require memory <= 2T", "memory", "<=", 2e12),
        ("require flops <= 1000", "flops", "<=", 1000),
    ],
)
def test_require_lines(line, metric, op, limit):
    space = parse_space(head("stages simple x [1]\n" + line + "\n"))
    (req,) = space.requires
    assert (req.metric, req.op, req.limit) == (metric, op, limit)


def test_groups_that_do_not_divide_are_skipped_and_counted():
    ex = expand(parse_space(head("stages simple-G g=choose(2,3,4) x [1,1] widths=[8,16]\n")))
    assert [c.parts["stages"][0].groups for c in ex.candidates] == [2, 4]
    (reason,) = [r for (kind, r), n in ex.tally.reasons.items() if kind == "invalid"]
    assert "does not divide" in reason


def test_choices_stand_for_any_value():
    space = parse_space(
        head(
            "stem conv 3x7x7 out=choose(32,64) stride=1x2x2, maxpool 1x3x3 stride=1x2x2\n"
            "stages choose(bottleneck-G, ir-csn) g=4 x [choose(1,2),1] widths=choose([16,32],[32,64]) "
            "strides=[1x1x1,choose(2x2x2,1x2x2)] expansion=choose(2,4) factorize=choose(3d,2+1d)\n"
        )
    )
    assert space.raw_size == 2 * 2 * 2 * 2 * 2 * 2 * 2
    ex = expand(space)
    assert len(ex.candidates) == space.raw_size  # all distinct, all valid
    outs = {c.parts["stem"][0].out for c in ex.candidates}
    assert outs == {32, 64}
    fams = {c.parts["stages"][0].family.value for c in ex.candidates}
    assert fams == {"bottleneck-G", "bottleneck-D"}
    assert {c.parts["stages"][1].stride for c in ex.candidates} == {(2, 2, 2), (1, 2, 2)}
    assert {c.parts["stages"][0].factorize for c in ex.candidates} == {"3d", "2+1d"}


def test_per_stage_lines_and_whole_lists():
    space = parse_space(
        head(
            "stage choose(simple, simple-D) x choose(1,2) width=16\n"
            "stage choose(bottleneck, bottleneck-DG) g=2 x 1 width=choose(8,16) stride=2x2x2\n"
        )
    )
    ex = expand(space)
    assert len(ex.candidates) == 2 * 2 * 2 * 2
    mixed = [
        canonical(space, c)
        for c in ex.candidates
        if len({s.family for s in c.parts["stages"]}) == 2
    ]
    assert mixed and all("\nstage " in t for t in mixed)
    space = parse_space(head("stages simple x choose([1,1],[2,2],[1,1])\n"))
    ex = expand(space)
    assert len(ex.candidates) == 2  # the repeated list is a duplicate
    assert sum(n for (kind, _), n in ex.tally.reasons.items() if kind == "duplicate") == 1


def test_a_choice_inside_an_alternation():
    # any block option can vary, part by part of a value that alternates over the blocks
    space = parse_space(
        head("stages bottleneck kernel-a=choose(3x1x1, 1x1x1)/1x1x1 x [2,3] kernel-b=1x3x3\n")
    )
    assert [c.label for c in space.choices] == ["kernel-a/0"]
    first, second = (canonical(space, c) for c in expand(space).candidates)
    assert "kernel-a=3x1x1/1x1x1" in first and "kernel-a=" not in second  # 1x1x1: the default
    # the chosen part lands in the network: 3x1x1 in blocks 1, 3, ..., 1x1x1 in blocks 2, 4
    net = csnspec.parse(first)
    assert [s.kernel_a for s in net.stages] == [((3, 1, 1), (1, 1, 1))] * 2


def test_shipped_spaces_expand():
    for path in sorted((ROOT / "spaces").glob("*.space")):
        space = load_space(path)
        if space.raw_size <= 100:
            assert expand(space).candidates, path


# -- errors --------------------------------------------------------------------------------


def test_empty_choose_is_an_error_at_its_place():
    err = error_of(head("stages simple-G g=choose() x [1]\n"))
    text = str(err)
    assert text.startswith("bad.space:4:19: error: `choose()` needs at least one alternative")
    assert "^^^^^^" in text and "hint:" in text


def test_unknown_quantity_in_a_constraint_says_did_you_mean():
    err = error_of(head("stages simple x [1]\nrequire flop <= 30G\n"))
    text = str(err)
    assert text.startswith("bad.space:5:9: error: unknown quantity 'flop' in a constraint")
    assert "did you mean 'flops'?" in text


def test_unknown_unit_and_operator():
    assert "unknown unit 'X'" in str(error_of(head("stages simple x [1]\nrequire flops <= 30X\n")))
    err = error_of(head("stages simple x [1]\nrequire flops == 30G\n"))
    assert "bad.space:5:15: error: expected a comparison (<=, <, >=, >), got '='" in str(err)
    assert "e.g. `require flops <= 30G`" in str(err)


def test_misspelt_family_in_a_choice_points_at_it():
    err = error_of(head("stages choose(simple, bottlenek) x [1]\n"))
    text = str(err)
    assert text.startswith("bad.space:4:23: error: the alternative 'bottlenek' is never valid here")
    assert "did you mean 'bottleneck'?" in text
    assert "    stages choose(simple, bottlenek) x [1]\n                          ^^^^^^^^^" in text


def test_space_that_expands_to_nothing_summarises_why():
    err = error_of(
        head("stages simple-G g=choose(3,5) x [1,1] widths=[8,16]\nrequire flops <= 1G\n")
    )
    text = str(err)
    assert "the space has no valid candidate" in text
    assert (
        "invalid: g=3 does not divide" in text and "2 combinations looked at, 0 candidates" in text
    )
    err = error_of(head("stages simple x [1]\nrequire flops <= 1K\n"))
    assert "rejected: fails `require flops <= 1K`" in str(err)


def test_structural_errors():
    assert "no `space` line" in str(error_of("input 3x8x8x8\nclasses 2\nstages simple x [1]\n"))
    err = error_of("network n\ninput 3x8x8x8\n")
    assert "`space NAME`" in str(err) and "bad.space:1:1" in str(err)
    err = error_of(head("stages simple x [1]\nstage simple x 1 width=8\n"))
    assert "either one `stages` line or `stage` lines" in str(err)
    err = error_of(head("stages simple x [choose(1,choose(2,3))]\n"))
    assert "choices cannot be nested" in str(err)
    err = error_of(head("stages simple x [1] widths=choose([8],[8,16])\n"))
    assert (
        "the alternative '[8,16]' is never valid here: `widths` has 2 values for 1 stages"
        in str(err)
    )


@pytest.mark.parametrize(
    "line, words",
    [
        ("stages simple x [choose(1, " + "9" * 5000 + ")]", "digits is too large"),
        ("stages simple x [1]\nrequire flops <= 1e400", "must be a finite number"),
        ("stages simple x [1]\nrequire flops <= " + "9" * 5000, "must be a finite number"),
        ("norm batchnorm eps=choose(1e-3, 1e400)\nstages simple x [1]", "finite number"),
    ],
)
def test_huge_and_non_finite_numbers_are_refused_at_their_token(line, words):
    # issue 14 items 2 and 3, in space files
    text = head(line + "\n")
    err = error_of(text)
    assert words in err.message
    lines = text.split("\n")
    assert err.span is not None and 4 <= err.span.line <= len(lines)
    assert lines[err.span.line - 1][err.span.column - 1] in "19"
    assert len(str(err)) < 1000


def test_space_line_breaks_are_the_spec_language_s():
    # issue 14 item 4: a CR-only space reads as the LF one; a form feed is whitespace
    text = head("stages simple\fx [choose(1, 2)]\n")
    cr_only = expand(parse_space(text.replace("\n", "\r")))
    assert len(cr_only.candidates) == len(expand(parse_space(text)).candidates) == 2
    err = error_of(head("stages simple x [choose(1, 2)]\x0b\n"))
    assert (err.span.line, err.span.column) == (4, 31)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "input 3x8x112x112\n"])
def test_a_missing_statement_in_a_space_is_reported_at_the_start(text):
    # issue 14 item 6, as in specs: 1:1, with the hint
    err = error_of(text)
    assert err.message == "the space has no `space` line"
    assert (err.span.line, err.span.column) == (1, 1)
    assert err.hint == "start with a line like `space my-space`"
