"""Bad input: every message points at the token that caused it (`file:line:col`, the source
line, a caret under the token), says what is wrong in words, and gives a hint where one helps."""

from __future__ import annotations

import re

import pytest

import csnspec

HEAD = "network n\ninput 3x8x224x224\nclasses 400\n"  # three lines: errors below are on line 4
SMALL = "network n\ninput 3x8x112x112\nclasses 4\n"

# name, text, line, the token the caret underlines (its first occurrence on that line, or
# (text, nth occurrence)), words the message must contain, words the hint must contain (None: no hint)
CASES = [
    # -- syntax
    (
        "missing x",
        HEAD + "stages bottleneck [3,4,6,3]\n",
        4,
        "[",
        ["expected 'x' and the block count", "got '['"],
        "write 'x' before the block counts",
    ),
    (
        "missing brackets",
        HEAD + "stages bottleneck x 3,4,6,3\n",
        4,
        "3",
        ["expected '['", "got '3'"],
        "one block count per stage",
    ),
    (
        "missing closing bracket",
        HEAD + "stages bottleneck x [3,4,6,3\n",
        4,
        None,
        ["expected ',' or ']'", "got the end of the line"],
        None,
    ),
    (
        "stray character",
        HEAD + "stages bottleneck x [3,4,6,3] $\n",
        4,
        "$",
        ["unexpected character '$'", "an option like g=4 or the end of the line"],
        None,
    ),
    (
        "semicolon in a list",
        HEAD + "stages bottleneck x [3,4;6,3]\n",
        4,
        ";",
        ["unexpected character ';'", "expected ',' or ']'"],
        None,
    ),
    (
        "parentheses",
        HEAD + "stages simple x (2,2,2,2)\n",
        4,
        "(",
        ["unexpected character '('", "expected '['"],
        "square brackets",
    ),
    (
        "colon for equals",
        HEAD + "stages bottleneck x [2,2,2,2] expansion:2\n",
        4,
        ":",
        ["unexpected character ':'", "expected '='"],
        "key=value",
    ),
    (
        "unknown statement",
        HEAD + "stagse bottleneck x [3,4,6,3]\n",
        4,
        "stagse",
        [
            "expected a statement (network, input, classes, norm, stem, stages, stage, head)",
            "got 'stagse'",
        ],
        "did you mean 'stage'?",
    ),
    (
        "unknown statement far from all",
        HEAD + "qqq 3\n",
        4,
        "qqq",
        ["expected a statement"],
        "each line starts with one of",
    ),
    (
        "truncated in a list",
        HEAD + "stages bottleneck x [3,4,",
        4,
        None,
        ["expected a whole number", "got the end of the file"],
        None,
    ),
    (
        "truncated after x",
        HEAD + "stages bottleneck x",
        4,
        None,
        ["expected '['", "got the end of the file"],
        None,
    ),
    ("truncated statement", "network", 1, None, ["expected a name", "the end of the file"], None),
    (
        "two statements on a line",
        "network n input 3x8x224x224\n",
        1,
        "input",
        ["expected the end of the line", "got 'input'"],
        "its own line",
    ),
    (
        "stages with one count",
        HEAD + "stages simple x 2\n",
        4,
        "2",
        ["expected '['"],
        "use a `stage` line for a single stage",
    ),
    (
        "stage with a list",
        HEAD + "stage simple x [2] width=8\n",
        4,
        "[",
        ["expected a whole number", "got '['"],
        "use `stages` for a list",
    ),
    # -- names of families, options, statements
    (
        "misspelt family",
        HEAD + "stages bottlenek x [3,4,6,3]\n",
        4,
        "bottlenek",
        ["unknown block family 'bottlenek'"],
        "did you mean 'bottleneck'?",
    ),
    (
        "unknown family",
        HEAD + "stages zzz x [3,4,6,3]\n",
        4,
        "zzz",
        ["unknown block family 'zzz'"],
        "families: simple, simple-G",
    ),
    (
        "misspelt option",
        HEAD + "stages bottleneck x [3,4,6,3] expansoin=2\n",
        4,
        "expansoin",
        ["unknown option `expansoin` for a `stages` line"],
        "did you mean 'expansion'?",
    ),
    (
        "unknown option",
        HEAD + "stages simple x [2,2,2,2] foo=3\n",
        4,
        "foo",
        ["unknown option `foo`"],
        "a `stages` line takes: g, expansion",
    ),
    (
        "duplicated option",
        HEAD + "stages bottleneck x [2,2,2,2] expansion=2 expansion=3\n",
        4,
        ("expansion", 2),
        ["duplicate option `expansion`"],
        "give each option once",
    ),
    (
        "misspelt choice",
        HEAD + "stages bottleneck stride-at=mid x [2,2,2,2]\n",
        4,
        "mid",
        ["`stride-at` takes one of middle, first, got 'mid'"],
        "did you mean 'middle'?",
    ),
    (
        "misspelt factorization",
        HEAD + "stages bottleneck factorize=2d x [2,2,2,2]\n",
        4,
        "2d",
        ["`factorize` takes one of 3d, 2+1d, 1+2d, got '2d'"],
        "did you mean '2+1d'?",
    ),
    (
        "bad boolean",
        HEAD + "stages bottleneck-IP ip-relu=yes x [2,2,2,2]\n",
        4,
        "yes",
        ["`ip-relu` takes on or off, got 'yes'"],
        None,
    ),
    (
        "unknown norm",
        HEAD + "norm layernorm\nstages simple x [1]\n",
        4,
        "layernorm",
        ["unknown norm 'layernorm'"],
        "norm batchnorm",
    ),
    (
        "unknown stem layer",
        HEAD + "stem conv 3x7x7 out=8, avgpool 1x3x3\nstages simple x [1]\n",
        4,
        "avgpool",
        ["unknown stem layer 'avgpool'"],
        "did you mean 'maxpool'?",
    ),
    (
        "unknown head layer",
        HEAD + "stages simple x [1]\nhead avgpool, softmax, fc\n",
        5,
        "softmax",
        ["unknown head layer 'softmax'"],
        "avgpool[, conv ...][, dropout P], fc",
    ),
    (
        "head out of order",
        HEAD + "stages simple x [1]\nhead fc, avgpool\n",
        5,
        "head",
        ["the head is `[conv ...,] avgpool[, conv ...][, dropout P], fc` in that order"],
        "pool and a fully-connected",
    ),
    # -- X3D: se, act-b, expansion, stem groups and norm, head convs
    (
        "se on a simple block",
        HEAD + "stages simple se=0.25 x [1]\n",
        4,
        "se",
        ["`se=` means nothing for simple blocks"],
        "squeeze-excitation follows the middle conv",
    ),
    (
        "se ratio above one",
        HEAD + "stages x3d se=1.5 x [1]\n",
        4,
        "1.5",
        ["se must be at most 1", "got 1.5"],
        None,
    ),
    (
        "se takes a number",
        HEAD + "stages x3d se=on x [1]\n",
        4,
        "on",
        ["`se` takes a number, got 'on'"],
        None,
    ),
    (
        "unknown inner activation",
        HEAD + "stages x3d act-b=swsh x [1]\n",
        4,
        "swsh",
        ["`act-b` takes one of relu, swish, got 'swsh'"],
        "did you mean 'swish'?",
    ),
    (
        "fractional bottleneck expansion",
        HEAD + "stages bottleneck x [1] expansion=2.5\n",
        4,
        "2.5",
        ["a bottleneck block's expansion is a whole number, got 2.5"],
        None,
    ),
    (
        "x3d expansion leaves no inner width",
        HEAD + "stages x3d x [1] widths=[8] expansion=0.1\n",
        4,
        "0.1",
        ["leaves layer1.0 no inner channels"],
        "larger expansion or width",
    ),
    (
        "stem groups do not divide",
        HEAD + "stem conv 1x3x3 out=24 groups=5\nstages simple x [1]\n",
        4,
        "5",
        ["groups=5 does not divide the 3 input and 24 output channels of the stem conv"],
        "channel-wise conv has groups=out=3",
    ),
    (
        "stem norm takes on or off",
        HEAD + "stem conv 1x3x3 out=24 norm=none\nstages simple x [1]\n",
        4,
        "none",
        ["`norm` takes on or off, got 'none'"],
        None,
    ),
    (
        "head conv without out",
        HEAD + "stages simple x [1]\nhead conv 1x1x1, avgpool, fc\n",
        5,
        "conv",
        ["a head conv needs its output width"],
        "out=2048",
    ),
    (
        "head conv without kernel",
        HEAD + "stages simple x [1]\nhead conv out=8, avgpool, fc\n",
        5,
        "conv",
        ["a head conv needs its kernel size"],
        "conv 1x1x1 out=2048",
    ),
    (
        "head conv unknown option",
        HEAD + "stages simple x [1]\nhead conv 1x1x1 out=8 groups=2, avgpool, fc\n",
        5,
        "groups",
        ["unknown option `groups` for head conv"],
        "head conv takes: out, norm",
    ),
    (
        "head conv after dropout",
        HEAD + "stages simple x [1]\nhead avgpool, dropout 0.5, conv 1x1x1 out=8, fc\n",
        5,
        "head",
        ["the head is `[conv ...,] avgpool[, conv ...][, dropout P], fc` in that order"],
        "pool and a fully-connected",
    ),
    (
        "head conv width",
        HEAD + "stages simple x [1]\nhead conv 1x1x1 out=0, avgpool, fc\n",
        5,
        "0",
        ["out must be positive, got 0"],
        None,
    ),
    # -- groups
    (
        "groups do not divide a width",
        HEAD + "stages bottleneck-G g=3 x [3,4,6,3]\n",
        4,
        "3",
        ["g=3 does not divide the 64 input channels of layer1.0.conv_b"],
        "g=1|2|4|8|16|32|64",
    ),
    (
        "groups do not divide an output width",
        SMALL + "stage simple-G g=16 x 1 width=40\n",
        4,
        "16",
        ["g=16 does not divide the 40 output channels of layer1.0.conv_a"],
        "g=1|2|4|8",
    ),
    (
        "-G family without g",
        HEAD + "stages simple-G x [2,2,2,2]\n",
        4,
        "simple-G",
        ["simple-G needs the number of groups"],
        "`simple-G g=4`",
    ),
    (
        "g on a family without groups",
        HEAD + "stages bottleneck-D g=4 x [2,2,2,2]\n",
        4,
        ("g", 2),
        ["`g=` means nothing for bottleneck-D blocks"],
        "bottleneck-DG",
    ),
    (
        "zero groups",
        HEAD + "stages simple-G g=0 x [1]\n",
        4,
        "0",
        ["g must be positive, got 0"],
        None,
    ),
    # -- family options
    (
        "expansion on simple blocks",
        HEAD + "stages simple x [2,2,2,2] expansion=2\n",
        4,
        "expansion",
        ["`expansion=` means nothing for simple blocks"],
        "no expansion",
    ),
    (
        "ip-relu off the ip family",
        HEAD + "stages bottleneck-D ip-relu=on x [1]\n",
        4,
        "ip-relu",
        ["`ip-relu=` means nothing for bottleneck-D blocks"],
        "only bottleneck-IP",
    ),
    (
        "project off simple-D",
        HEAD + "stages simple project=off x [1]\n",
        4,
        "project",
        ["`project=` means nothing for simple blocks"],
        "only simple-D",
    ),
    (
        "depthwise conv changing width",
        HEAD + "stages simple-D project=off x [2,2,2,2]\n",
        4,
        "off",
        ["a depthwise conv cannot change width (64 -> 128) in layer2.0.conv_a"],
        "`project=on`",
    ),
    # -- sizes
    (
        "zero input size",
        "network n\ninput 3x0x224x224\nclasses 400\nstages simple x [1]\n",
        2,
        "3x0x224x224",
        ["every input size must be positive, got 0"],
        None,
    ),
    (
        "input with three sizes",
        "network n\ninput 3x224x224\nclasses 4\nstages simple x [1]\n",
        2,
        "3x224x224",
        ["takes 4 sizes, got 3 in '3x224x224'"],
        "3x8x224x224",
    ),
    (
        "zero classes",
        "network n\ninput 3x8x224x224\nclasses 0\nstages simple x [1]\n",
        3,
        "0",
        ["the class count must be positive, got 0"],
        None,
    ),
    (
        "negative classes",
        "network n\ninput 3x8x224x224\nclasses -5\nstages simple x [1]\n",
        3,
        "-5",
        ["the class count must be positive, got -5"],
        None,
    ),
    (
        "negative width",
        HEAD + "stage simple x 2 width=-8\n",
        4,
        "-8",
        ["the width must be positive, got -8"],
        None,
    ),
    (
        "zero blocks",
        HEAD + "stage simple x 0 width=8\n",
        4,
        "0",
        ["the block count must be positive, got 0"],
        None,
    ),
    (
        "huge block count",
        HEAD + "stages simple x [99999999999]\n",
        4,
        "99999999999",
        ["the block count must be at most 1000"],
        None,
    ),
    (
        "too many blocks in all",
        HEAD + "stages simple x [600,600]\n",
        4,
        "stages",
        ["the network has 1200 blocks; csnspec takes at most 1000"],
        None,
    ),
    (
        "huge width",
        HEAD + "stages simple x [1] widths=[100000000]\n",
        4,
        "100000000",
        ["the width must be at most 65536"],
        None,
    ),
    (
        "negative eps",
        HEAD + "norm batchnorm eps=-1\nstages simple x [1]\n",
        4,
        "-1",
        ["eps must be positive, got -1.0"],
        None,
    ),
    (
        "momentum above 1",
        HEAD + "norm batchnorm momentum=2\nstages simple x [1]\n",
        4,
        "2",
        ["momentum must be at most 1.0, got 2.0"],
        None,
    ),
    (
        "dropout of 1",
        HEAD + "stages simple x [1]\nhead avgpool, dropout 1, fc\n",
        5,
        "dropout",
        ["the dropout rate must be below 1.0"],
        None,
    ),
    (
        "stride with two sizes",
        HEAD + "stage simple x 1 width=8 stride=2x2\n",
        4,
        "2x2",
        ["`stride` (time x height x width) takes 3 sizes, got 2"],
        "1x2x2",
    ),
    (
        "zero stride",
        HEAD + "stage simple x 1 width=8 stride=0x1x1\n",
        4,
        "0x1x1",
        ["every stride must be positive, got 0"],
        None,
    ),
    (
        "maxpool padding over half its kernel",
        HEAD + "stem conv 3x7x7 out=8, maxpool 1x3x3 padding=0x2x1\nstages simple x [1]\n",
        4,
        "0x2x1",
        ["a maxpool's padding is at most half its kernel"],
        None,
    ),
    (
        "option taking a list given one value",
        HEAD + "stages simple x [1] widths=8\n",
        4,
        "8",
        ["`widths` takes a list, e.g. widths=[64,128,256,512]"],
        None,
    ),
    (
        "option taking one value given a list",
        HEAD + "stage simple x 1 width=[8]\n",
        4,
        "width",
        ["`width` takes a single value, not a list"],
        None,
    ),
    # -- statements
    (
        "duplicated statement",
        HEAD + "classes 10\nstages simple x [1]\n",
        4,
        "classes",
        ["duplicate `classes` line (first at line 3)"],
        "each statement appears once",
    ),
    (
        "duplicated stages",
        HEAD + "stages simple x [1]\nstages simple x [1]\n",
        5,
        "stages",
        ["duplicate `stages` line (first at line 4)"],
        "each statement appears once, except `stage`",
    ),
    (
        "missing network",
        "input 3x8x224x224\nclasses 400\nstages simple x [1]\n",
        1,
        "i",  # a missing statement is reported at 1:1, the start of the file
        ["the spec has no `network` line"],
        "`network my-net`",
    ),
    (
        "missing input",
        "network n\nclasses 400\nstages simple x [1]\n",
        1,
        "n",
        ["the spec has no `input` line"],
        "`input 3x8x224x224`",
    ),
    (
        "missing classes",
        "network n\ninput 3x8x224x224\nstages simple x [1]\n",
        1,
        "n",
        ["the spec has no `classes` line"],
        "`classes 400`",
    ),
    ("missing stages", HEAD, 1, "n", ["the spec has no stages"], "stages bottleneck-D x"),
    (
        "stages and stage mixed",
        HEAD + "stages simple x [1]\nstage simple x 1 width=8\n",
        5,
        "stage",
        ["use either one `stages` line or `stage` lines, not both"],
        None,
    ),
    (
        "stage without width",
        HEAD + "stage simple x 2\n",
        4,
        "simple",
        ["a `stage` line needs its width"],
        "width=64",
    ),
    (
        "widths of the wrong length",
        HEAD + "stages simple x [2,2,2,2] widths=[64,128]\n",
        4,
        "widths",
        ["`widths` has 2 values for 4 stages"],
        "one value per stage",
    ),
    (
        "strides of the wrong length",
        HEAD + "stages simple x [1,1] strides=[1x1x1]\n",
        4,
        "strides",
        ["`strides` has 1 values for 2 stages"],
        "one value per stage",
    ),
    # -- shapes
    (
        "stem conv that shrinks a tiny input",
        SMALL.replace("3x8x112x112", "3x1x4x4")
        + "stem conv 3x7x7 out=8 padding=0x0x0\n"
        + "stages simple x [1]\n",
        4,
        "0x0x0",
        ["the stem conv shrinks the frames below 1 (1 -> -1)"],
        "larger input clip",
    ),
    (
        "stem maxpool that shrinks a tiny input",
        SMALL.replace("3x8x112x112", "3x4x2x2")
        + "stem conv 1x1x1 out=8, maxpool 1x3x3 padding=0x0x0\nstages simple x [1]\n",
        4,
        "0x0x0",
        ["the stem maxpool shrinks the height below 1 (2 -> 0)"],
        "larger input clip",
    ),
    (
        "avgpool window larger than the final map",
        HEAD + "stages simple x [1,1,1,1]\nhead avgpool 4x7x7, fc\n",
        5,
        "4x7x7",
        ["the avgpool window 4x7x7 is larger than the final 1x7x7 feature map"],
        "smaller window",
    ),
    # -- hostile names
    (
        "quoted name",
        'network "a"\n' + HEAD[10:] + "stages simple x [1]\n",
        1,
        '"',
        ["unexpected character '\"'", "expected a name"],
        "without quotes",
    ),
    (
        "dunder name",
        "network __import__\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "__import__",
        ["a network name starts with a letter"],
        None,
    ),
    (
        "keyword name",
        "network class\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "class",
        ["'class' is reserved in Python and cannot name a network"],
        None,
    ),
    (
        "keyword name after mapping",
        "network None\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "None",
        ["'None' is reserved in Python"],
        None,
    ),
    (
        "cyrillic look-alike",
        "network n\u0435t\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "\u0435",
        ["unexpected character '\u0435'"],
        "U+0435 CYRILLIC SMALL LETTER IE is not ASCII",
    ),
    (
        "cyrillic first letter",
        "network \u0430b\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "\u0430",
        ["unexpected character"],
        "CYRILLIC SMALL LETTER A",
    ),
    (
        "name cut by a newline",
        "network \ninput 3x8x224x224\nclasses 4\nstages simple x [1]\n",
        1,
        None,
        ["expected a name, got the end of the line"],
        None,
    ),
    (
        "name starting with a digit",
        "network 3d\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "3d",
        ["expected a name, got '3d'"],
        None,
    ),
    (
        "overlong name",
        "network " + "a" * 65 + "\n" + HEAD[10:] + "stages simple x [1]\n",
        1,
        "a" * 65,
        ["at most 64 letters"],
        None,
    ),
    # -- alternation, per-stage kernels, (2+1)D widths, stage pools (issue 13)
    (
        "alternation of an option that does not alternate",
        HEAD + "stages bottleneck expansion=2/4 x [3,4,6,3]\n",
        4,
        "/",
        ["`expansion` takes a single value", "only kernel-a, kernel-b", "alternate"],
        "write one value, e.g. expansion=2",
    ),
    (
        "short kernel in an alternation",
        HEAD + "stages bottleneck kernel-a=3x1x1/1x1 x [3,4,6,3]\n",
        4,
        ("1x1", 2),
        ["`kernel-a` (time x height x width) takes 3 sizes, got 2 in '1x1'"],
        "e.g. 1x2x2",
    ),
    (
        "zero kernel",
        HEAD + "stages bottleneck kernel-b=0x3x3 x [3,4,6,3]\n",
        4,
        "0x3x3",
        ["every kernel-b size must be positive, got 0"],
        None,
    ),
    (
        "per-stage kernels for too few stages",
        HEAD + "stages bottleneck kernel-a=[3x1x1,1x1x1] x [3,4,6,3]\n",
        4,
        "kernel-a",
        ["`kernel-a` has 2 values for 4 stages"],
        "one value per stage, or one value for every stage",
    ),
    (
        "kernel list on a stage line",
        HEAD + "stage bottleneck kernel-a=[3x1x1] x 1 width=64\n",
        4,
        "kernel-a",
        ["`kernel-a` takes one value or an alternation like 3x1x1/1x1x1, not a list"],
        "goes on a `stages` line",
    ),
    (
        "nested kernel list",
        HEAD + "stages bottleneck kernel-a=[[3x1x1]] x [3,4,6,3]\n",
        4,
        ("[", 2),
        ["`kernel-a` takes one value or alternation per stage, not a nested list"],
        None,
    ),
    (
        "mid without factorized convs",
        HEAD + "stages simple mid=matched x [2,2,2,2]\n",
        4,
        "mid",
        ["`mid=matched` is the width between factorized convs", "these convs are 3D"],
        "add factorize=2+1d (or 1+2d)",
    ),
    (
        "mid on channel-separated blocks",
        HEAD + "stages ir-csn factorize=2+1d mid=matched x [2,2,2,2]\n",
        4,
        "mid",
        ["`mid=` means nothing for bottleneck-D blocks"],
        "keep their width between the factorized convs",
    ),
    (
        "misspelt mid",
        HEAD + "stages simple factorize=2+1d mid=match x [2,2,2,2]\n",
        4,
        "match",
        ["`mid` takes one of out, matched, matched-block, got 'match'"],
        "did you mean 'matched'?",
    ),
    (
        "pool that is not a size",
        HEAD + "stages bottleneck pools=[2x1x1,max,none,none] x [3,4,6,3]\n",
        4,
        "max",
        ["`pools` takes a pool size like 2x1x1, or none, got 'max'"],
        "kernel = stride = the size",
    ),
    (
        "pools for too few stages",
        HEAD + "stages bottleneck pools=[2x1x1] x [3,4,6,3]\n",
        4,
        "pools",
        ["`pools` has 1 values for 4 stages"],
        "one value per stage",
    ),
    (
        "stage pool larger than the feature map",
        HEAD + "stage bottleneck x 1 width=8 pool=9x1x1\n",
        4,
        "9x1x1",
        ["the pool 9x1x1 after stage 1 shrinks the frames below 1 (8 -> 0)"],
        "use a larger input clip",
    ),
    (
        "alternating pool",
        HEAD + "stage bottleneck x 1 width=8 pool=2x1x1/1x1x1\n",
        4,
        "/",
        ["`pool` takes a single value"],
        "write one value, e.g. pool=2x1x1",
    ),
    (
        "alternation without its last value",
        HEAD + "stages bottleneck kernel-a=3x1x1/ x [3,4,6,3]\n",
        4,
        "[",
        ["expected", "got '['"],
        "a '/' needs a value after it",
    ),
    (
        "alternation without its first value",
        HEAD + "stages bottleneck kernel-a=/3x1x1 x [3,4,6,3]\n",
        4,
        "/",
        ["expected", "sizes like 3x7x7", "got '/'"],
        None,
    ),
]


def parse_error(text: str) -> csnspec.CsnError:
    with pytest.raises(csnspec.CsnError) as info:
        csnspec.parse(text, "t.csn")
    return info.value


@pytest.mark.parametrize(
    "text, line, at, words, hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(text, line, at, words, hint):
    message = str(parse_error(text))
    lines = message.splitlines()
    m = re.match(r"t\.csn:(\d+):(\d+): error: (.*)", lines[0])
    assert m, message
    assert int(m.group(1)) == line, message
    col = int(m.group(2))
    source = text.splitlines()[line - 1] if text.splitlines() else ""
    assert lines[1] == "    " + source, message
    caret = lines[2]
    assert caret.strip() and set(caret.strip()) == {"^"}, message
    assert len(caret) - len(caret.lstrip()) == 4 + col - 1, message
    if at is None:  # the end of the line or file: the caret sits just past the text
        assert col == len(source) + 1, message
    else:
        token, nth = at if isinstance(at, tuple) else (at, 1)
        starts = [i for i in range(len(source)) if source.startswith(token, i)]
        assert col - 1 == starts[nth - 1], message
        assert len(caret.strip()) == len(token), message
    for w in words:
        assert w in m.group(3), message
    hints = [x for x in lines if x.startswith("hint: ")]
    if hint is None:
        assert not hints, message
    else:
        assert len(hints) == 1 and hint in hints[0], message


INTERNAL = re.compile(r"__ANON|_NL\b|\$END|Token\(|Tree\(|lark|LSQB|RSQB|NAME\b|INT\b|DIMS")


@pytest.mark.parametrize("text", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_no_internal_names(text):
    message = str(parse_error(text))
    assert not INTERNAL.search(message), message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_says_what_is_missing_at_the_start(text):
    # issue 14 item 6: a missing statement is reported at 1:1, even in a file with no statement
    first_line = text.split("\n")[0]
    assert str(parse_error(text)).splitlines() == [
        "t.csn:1:1: error: the spec has no `network` line",
        "    " + first_line,
        "    ^",
        "hint: add a line like `network my-net`",
    ]


def test_default_file_name():
    with pytest.raises(csnspec.CsnError) as info:
        csnspec.parse(HEAD + "stages zzz x [1]\n")
    assert str(info.value).startswith("<spec>:4:8: error: ")


def test_error_carries_its_parts():
    err = parse_error(HEAD + "stages bottlenek x [1]\n")
    assert (err.span.line, err.span.column, err.span.length) == (4, 8, 9)
    assert err.filename == "t.csn" and err.hint == "did you mean 'bottleneck'?"
    assert err.message == "unknown block family 'bottlenek'"


def test_tabs_keep_the_caret_under_the_token():
    message = str(parse_error(HEAD + "stages\tbottlenek x [1]\n"))
    src, caret = message.splitlines()[1:3]
    assert src[caret.index("^") :].startswith("bottlenek")


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.csn"
    with pytest.raises(csnspec.CsnError, match="cannot read spec: No such file or directory"):
        csnspec.load(missing)
    with pytest.raises(csnspec.CsnError, match="cannot read spec: Is a directory"):
        csnspec.load(tmp_path)
    binary = tmp_path / "bin.csn"
    binary.write_bytes(b"network n\n\xff\xfe\n")
    with pytest.raises(csnspec.CsnError) as info:
        csnspec.load(binary)
    assert str(info.value).startswith(f"{binary}: error: cannot read spec: not UTF-8 text")
    assert "byte 0xff on line 2" in str(info.value)


# -- issue 14: inputs that used to escape as tracebacks or wrong positions ----------------------


@pytest.mark.parametrize(
    "line",
    [
        "classes " + "9" * 5000,
        "input 3x8x" + "2" * 5000 + "x224",
        "stages simple x [" + "1" * 5000 + "]",
        "stage simple x 1 width=" + "8" * 5000,
        "norm batchnorm eps=" + "1" * 5000,
    ],
)
def test_huge_integers_are_refused_at_their_token(line):
    # Python's int() refuses more than 4,300 digits with a ValueError (issue 14 item 2)
    text = (
        "network n\ninput 3x8x224x224\n" + line + "\n"
        if line.startswith("classes")
        else HEAD + line + "\n"
    )
    if line.startswith("input"):
        text = "network n\n" + line + "\nclasses 4\nstages simple x [1]\n"
    elif not line.startswith(("stages", "stage")):
        text += "stages simple x [1]\n"
    err = parse_error(text)
    assert "digits is too large" in err.message
    number_line = next(i for i, s in enumerate(text.split("\n"), 1) if s == line)
    assert err.span.line == number_line
    assert text.split("\n")[number_line - 1][err.span.column - 1].isdigit()
    assert len(str(err)) < 1000  # the number is not echoed whole


@pytest.mark.parametrize(
    "line",
    ["norm batchnorm eps=1e400", "norm batchnorm eps=2e308", "head avgpool, dropout 1e999, fc"],
)
def test_non_finite_floats_are_refused_at_their_token(line):
    # 1e400 reads as inf in Python; fmt would print `inf`, which does not parse (issue 14 item 3)
    err = parse_error(HEAD + line + "\nstages simple x [1]\n")
    assert "must be a finite number" in err.message
    assert err.span.line == 4
    assert line[err.span.column - 1 :].startswith(("1e", "2e"))


def test_non_finite_floats_are_refused_in_python_too():
    from pydantic import ValidationError

    from csnspec.spec import Norm

    with pytest.raises(ValidationError):
        Norm(eps=float("inf"))


@pytest.mark.parametrize(
    "separator", ["\f", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_only_newlines_break_lines(separator):
    # issue 14 item 4: the caret's line is the line the position counts, whatever
    # other tools call a line break; form feed is whitespace, the rest are refused
    text = HEAD + f"stages simple{separator}x [1]\nhead avgpool, fc\n"
    if separator == "\f":
        assert csnspec.parse(text).stages[0].blocks == 1
        return
    err = parse_error(text)
    assert (err.span.line, err.span.column) == (4, 14)
    quoted = str(err).splitlines()[1]
    assert quoted.startswith("    stages simple") and quoted.endswith("x [1]")


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_cr_and_crlf_files_read_like_lf_files(newline):
    text = "network n\ninput 3x8x224x224\nclasses 400\nstages simple x [1]\n"
    assert csnspec.parse(text.replace("\n", newline)) == csnspec.parse(text)
    err = parse_error((HEAD + "stages bottlenek x [1]\n").replace("\n", newline))
    assert (err.span.line, err.span.column) == (4, 8)
    assert str(err).splitlines()[1] == "    stages bottlenek x [1]"


def test_control_characters_are_shown_escaped():
    # issue 14 item 5: an ESC sequence in a spec must not reach the terminal
    message = str(parse_error(HEAD + "stages \x1b[2Jsimple x [1]\n"))
    assert "\x1b" not in message and "\\x1b" in message
    lines = message.splitlines()
    assert lines[1] == "    stages \\x1b[2Jsimple x [1]"
    assert lines[2] == "    " + " " * len("stages ") + "^^^^"  # under all of `\x1b`


def test_long_names_are_not_echoed_whole():
    # issue 14 item 7
    name = "b" * 50_000
    message = str(parse_error(HEAD + f"stages {name} x [1]\n"))
    assert len(message) < 1000
    assert "50000 characters" in message


def test_specs_past_the_size_limit_are_refused_before_parsing(tmp_path):
    from csnspec.parse import MAX_SPEC_BYTES

    text = HEAD + "stages simple x [1]\n" + "\n" * MAX_SPEC_BYTES
    with pytest.raises(csnspec.CsnError, match="larger than 64 KiB; csnspec reads no larger"):
        csnspec.parse(text, "t.csn")
    big = tmp_path / "big.csn"
    big.write_text(text)
    with pytest.raises(csnspec.CsnError) as info:
        csnspec.load(big)
    assert str(info.value).startswith(f"{big}: error: the spec is larger than 64 KiB")


def test_a_stages_line_past_the_block_limit_is_refused_before_its_default_widths():
    # the default widths double per stage: 30,000 stages meant 2**30000-sized integers
    err = parse_error(HEAD + "stages simple x [" + "1," * 30_000 + "1]\n")
    assert err.message == "the `stages` line lists 30001 stages; csnspec takes at most 1000 blocks"
    assert (err.span.line, err.span.column) == (4, 1)
