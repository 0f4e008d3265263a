"""The command line: `check`, `stats` and `fmt`, in process (`csnspec.cli.main`) and, where the
process itself matters (exit status, tracebacks, imports), in a fresh subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import ROOT

import csnspec
from csnspec.cli import main

IPCSN152 = str(ROOT / "specs" / "ipcsn152.csn")
TINY = (
    "network tiny\ninput 3x4x32x32\nclasses 5\nstem none\nstages simple-D x [1,1] widths=[8,16]\n"
)


def run(*args):
    """Run `csnspec ARGS` in a fresh interpreter: (status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "csnspec.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.csn"
    path.write_text(TINY)
    return path


# -- bad input: status 2, one message, never a traceback -------------------------------------


def _bad_files(tmp_path):
    binary = tmp_path / "binary.csn"
    binary.write_bytes(b"network n\n\x80\x81\n")
    syntax = tmp_path / "syntax.csn"
    syntax.write_text("network n\ninput 3x8x224x224\nclasses 400\nstages bottleneck [3,4,6,3]\n")
    semantic = tmp_path / "groups.csn"
    semantic.write_text("network n\ninput 3x8x224x224\nclasses 400\nstages simple-G g=3 x [1]\n")
    return {
        "missing": (tmp_path / "missing.csn", "No such file or directory"),
        "directory": (tmp_path, "Is a directory"),
        "binary": (binary, "not UTF-8 text"),
        "syntax": (syntax, "4:19: error: expected 'x'"),
        "semantic": (semantic, "4:19: error: g=3 does not divide"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "binary", "syntax", "semantic"])
@pytest.mark.parametrize("command", [["check"], ["stats"], ["fmt"], ["fmt", "--check"]])
def test_bad_files_in_process(tmp_path, capsys, case, command):
    path, words = _bad_files(tmp_path)[case]
    assert main([*command, str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}") and words in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["missing", "directory", "binary", "syntax"])
def test_bad_files_in_a_subprocess(tmp_path, case):
    path, words = _bad_files(tmp_path)[case]
    status, out, err = run("stats", str(path))
    assert status == 2 and out == ""
    assert words in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "abc"], "--input takes channels x frames x height x width"),
        (["--input", "3x0x224x224"], "every input size must be positive, got 0"),
        (["--classes", "0"], "the class count must be positive, got 0"),
    ],
)
def test_bad_stats_arguments_in_a_subprocess(args, words):
    status, out, err = run("stats", IPCSN152, *args)
    assert status == 2 and out == "" and words in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "abc"], "--input takes channels x frames x height x width"),
        (["--input", "3x8x224"], "--input takes channels x frames x height x width"),
        (["--input", "3x0x224x224"], "with --input 3x0x224x224: every input size must be positive"),
        (["--input", "3x8x224x224", "--classes", "0"], "the class count must be positive"),
        (["--classes", "-3"], "with --classes -3: the class count must be positive, got -3"),
        (["--classes", "99999999"], "the class count must be at most"),
        (["--classes", "x"], "invalid int value"),
        (["--input", "3x8x" + "9" * 5000 + "x4"], "(5006 characters)"),  # issue 14 item 2
        (["--by", "layer"], "invalid choice"),
        (["--format", "xml"], "invalid choice"),
    ],
)
def test_bad_stats_arguments(capsys, args, words):
    with pytest.raises(SystemExit) if "invalid" in words else _nothing():
        assert main(["stats", IPCSN152, *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and words in err and "Traceback" not in err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_an_input_too_small_for_the_network(tmp_path, capsys):
    path = tmp_path / "valid.csn"
    path.write_text(TINY.replace("stem none", "stem conv 3x7x7 out=8 padding=0x0x0"))
    assert main(["stats", str(path)]) == 0
    capsys.readouterr()
    assert main(["stats", str(path), "--input", "3x8x4x4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: error: with --input 3x8x4x4: the stem conv shrinks the height")
    assert "hint: use a larger input clip" in err


def test_usage_errors_exit_2_without_traceback():
    for args in ([], ["nope"], ["stats"], ["fmt", "--check", "-w", IPCSN152]):
        status, _, err = run(*args)
        assert status == 2 and "usage:" in err and "Traceback" not in err, args


# -- check -------------------------------------------------------------------------------------


def test_check_prints_one_line_per_file(tmp_path, capsys, tiny):
    bad = tmp_path / "bad.csn"
    bad.write_text(TINY.replace("simple-D", "simple-X"))
    assert main(["check", IPCSN152, str(bad), str(tiny)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{IPCSN152}: ok (ip-csn-152, 50 blocks)",
        f"{tiny}: ok (tiny, 2 blocks)",
    ]
    assert err.startswith(f"{bad}:5:8: error: unknown block family 'simple-X'")
    assert main(["check", IPCSN152, str(tiny)]) == 0


def test_check_every_shipped_spec():
    from conftest import SPECS

    status, out, err = run("check", *map(str, SPECS))
    assert status == 0 and err == ""
    assert len(out.splitlines()) == len(SPECS) == 43  # 34, and issue 13's nine baselines (k13)


# -- stats ---------------------------------------------------------------------------------


def test_stats_json_has_the_exact_totals(capsys):
    assert main(["stats", IPCSN152, "--format", "json", "--by", "block"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["total"]) == {"flops", "params", "bn_params", "interactions", "activations"}
    assert all(type(v) is int for v in doc["total"].values())
    assert doc["network"] == "ip-csn-152" and doc["input"] == [3, 32, 224, 224]
    assert [r["name"] for r in doc["rows"]][:3] == ["stem", "layer1.0", "layer1.1"]
    assert len(doc["rows"]) == 52  # stem, 50 blocks, head
    for key in doc["total"]:
        assert sum(r[key] for r in doc["rows"]) == doc["total"][key]
    # the published parameter counts of ip-CSN-152: VMZ's model zoo 32.8 M (conv + fc) and
    # mmaction2's CSN README 33.02 M (BatchNorm's affine parameters included)
    assert round(doc["total"]["params"] / 1e6, 1) == 32.8
    assert round((doc["total"]["params"] + doc["total"]["bn_params"]) / 1e6, 2) == 33.02


def test_stats_csv_and_table(capsys):
    assert main(["stats", IPCSN152, "--format", "csv", "--by", "op"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1]["name"] == "total"
    assert sum(int(r["flops"]) for r in rows[:-1]) == int(rows[-1]["flops"])
    assert round(int(rows[-1]["params"]) / 1e6, 1) == 32.8  # VMZ's model zoo
    assert rows[0]["name"] == "stem.conv1" and rows[0]["output"] == "64x32x112x112"
    assert main(["stats", IPCSN152]) == 0
    table = capsys.readouterr().out
    assert table.startswith("ip-csn-152  (input 3x32x224x224)")
    assert [line.split()[0] for line in table.splitlines()[3:9]] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "head",
    ]
    last = table.splitlines()[-1].split()
    csv_flops = int(rows[-1]["flops"])  # the table prints the csv's exact total, in GFLOPs
    assert last[0] == "total" and last[2] == f"{csv_flops / 1e9:,.3f}"


def test_stats_for_another_clip(capsys):
    assert (
        main(["stats", IPCSN152, "--input", "3x8x224x224", "--classes", "400", "--format", "json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    # ip-CSN-152 on 8 frames keeps its parameters; its conv FLOPs are a quarter of those on
    # 32 frames (every temporal size divides exactly), the fc's (2048 x 400) stay the same
    full = csnspec.stats(csnspec.load(IPCSN152)).total
    assert doc["input"] == [3, 8, 224, 224]
    assert doc["total"]["params"] == full.params
    fc = 2048 * 400
    assert (doc["total"]["flops"] - fc) * 4 == full.flops - fc


# -- fmt -----------------------------------------------------------------------------------


def test_fmt_check_and_write(tmp_path, capsys):
    path = tmp_path / "messy.csn"
    messy = (
        "# a comment\nnetwork   n\ninput 3x8x112x112 # clip\nclasses 4\nstages SIMPLE x [1, 1]\n"
    )
    path.write_text(messy)
    assert main(["fmt", "--check", str(path)]) == 1
    assert capsys.readouterr().out == f"{path}: would be reformatted\n"
    assert path.read_text() == messy  # --check never writes
    assert main(["fmt", str(path)]) == 0
    canonical = capsys.readouterr().out
    assert canonical == "network n\ninput 3x8x112x112\nclasses 4\nstages simple x [1,1]\n"
    assert path.read_text() == messy  # printing never writes
    assert main(["fmt", "-w", str(path)]) == 0
    assert path.read_text() == canonical
    assert main(["fmt", "--check", str(path)]) == 0
    assert capsys.readouterr().out.endswith(f"{path}: canonical\n")
    assert csnspec.load(path) == csnspec.parse(messy)


def test_fmt_check_in_a_subprocess(tmp_path):
    path = tmp_path / "x.csn"
    path.write_text("network n\ninput 3x8x112x112\nclasses 4\nstages simple x [1,1]\n")
    assert run("fmt", "--check", str(path))[0] == 0
    path.write_text("network n\ninput 3x8x112x112\nclasses 4\nstages simple x [1,1]")  # no newline
    assert run("fmt", "--check", str(path))[0] == 1


# -- the Python API and import weight ----------------------------------------------------------


def test_python_api(tiny):
    net = csnspec.load(tiny)
    assert net == csnspec.parse(TINY) and net.name == "tiny"
    low = csnspec.lower(net)
    assert low == csnspec.lower(net)  # lowering is a pure function of the spec
    assert low.output_shape == (5,) and [s.out_shape for s in low.stages] == [
        (8, 4, 32, 32),
        (16, 2, 16, 16),
    ]
    report = csnspec.stats(net)
    assert report.total == csnspec.analyse(low).total
    assert report.network == "tiny" and report.input_shape == (3, 4, 32, 32)
    assert csnspec.format_spec(net) == TINY


def test_stats_imports_neither_torch_nor_jax_nor_other_commands():
    # a cold `csnspec stats` stays fast (issue 10 item 6): no array library, and of the
    # commands only `stats` itself (`weights` alone would load the checkpoint importer)
    code = (
        "import sys, io, contextlib\n"
        "from csnspec.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    status = main(['stats', {IPCSN152!r}])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'flax', 'numpy'})\n"
        "ours = sorted(m for m in sys.modules if m.startswith(('csnspec.commands.', "
        "'csnspec.weights', 'csnspec.data', 'csnspec.backends', 'csnspec.search')))\n"
        "print(status, heavy, ours)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "0 [] ['csnspec.commands.stats']\n", out.stderr


def test_help_lists_every_command(capsys):
    # commands load lazily: only the chosen one, but all of them for help and usage errors
    from csnspec.commands import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nope"])
    refused = capsys.readouterr().err
    for name in COMMANDS:
        assert f"\n    {name} " in listed and f"'{name}'" in refused, name


def test_a_missing_command_module_fails_loudly(monkeypatch):
    # a broken install, not bad input: the CLI must not quietly lose a command (issue 10 item 8)
    import csnspec.cli

    monkeypatch.setattr(csnspec.cli, "COMMANDS", ("check", "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        csnspec.cli.parser()


@pytest.mark.parametrize(
    "body, words",
    [
        (
            "classes " + "9" * 5000 + "\nstages simple x [1]\n",
            "a number of 5000 digits is too large",
        ),
        ("classes 4\nnorm batchnorm eps=1e400\nstages simple x [1]\n", "must be a finite number"),
        ("classes 4\nstages \x1b[31msimple x [1]\n", "\\x1b[31m"),
    ],
    ids=["huge integer", "infinite float", "escape sequence"],
)
@pytest.mark.parametrize("command", ["check", "stats", "fmt", "compile"])
def test_hostile_numbers_and_characters_in_every_command(tmp_path, body, words, command):
    # issue 14 items 2, 3 and 5, through the CLI: one message at the token, exit 2
    path = tmp_path / "bad.csn"
    path.write_text("network n\ninput 3x8x32x32\n" + body, encoding="utf-8")
    args = [command, str(path)] + (["-o", str(tmp_path / "out.py")] if command == "compile" else [])
    status, out, err = run(*args)
    assert status == 2 and out == "" and words in err and "Traceback" not in err, err
    assert f"{path}:" in err and "\x1b" not in err
