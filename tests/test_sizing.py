"""Model size said, and refused when it cannot fit, before any model is built (issue 14 item 21)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

import csnspec
from csnspec.cli import main
from csnspec.errors import CsnError
from csnspec.sizing import INFER, TRAIN, check_fits, footprint, parse_bytes

ROOT = Path(__file__).resolve().parent.parent


def test_the_footprint_counts_the_published_parameters():
    # ir-CSN-152, 400 classes: 29.70 M parameters (MMAction2 csn metafile.yml, with BN affines)
    fp = footprint(csnspec.lower(csnspec.load(ROOT / "specs" / "ircsn152.csn")))
    assert fp.params / 1e6 == pytest.approx(29.70, abs=0.005)


def test_bytes_follow_the_usage():
    low = csnspec.lower(csnspec.load(ROOT / "tests" / "data" / "tiny-ircsn.csn"))
    fp = footprint(low)
    assert fp.bytes(TRAIN, 2) - fp.bytes(INFER, 2) == 4 * (3 * fp.params + 2 * fp.activations)


def test_a_fitting_model_is_described_on_one_line():
    low = csnspec.lower(csnspec.load(ROOT / "tests" / "data" / "tiny-ircsn.csn"))
    out = io.StringIO()
    need = check_fits(low, usage=TRAIN, batch=2, what="train", available=10**12, stream=out)
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("tiny-ircsn: ")
    assert "M parameters" in line and "train needs about" in line and need > 0
    with pytest.raises(CsnError, match="cannot fit") as err:
        check_fits(low, usage=TRAIN, batch=2, what="train", available=need - 1, filename="t.csn")
    assert str(err.value).startswith("t.csn: error:")


def test_verify_on_a_million_classes_stops_before_building(tmp_path, capsys, monkeypatch):
    big = tmp_path / "big.csn"
    big.write_text(
        (ROOT / "specs" / "ircsn152.csn").read_text().replace("classes 400", "classes 1000000")
    )
    monkeypatch.setenv("CSNSPEC_MEMORY_LIMIT", "8G")  # the fc alone is 2048 x 10^6 float32: 8.2 GB
    assert main(["verify", str(big)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{big}: error: the model cannot fit")
    assert "2077.88 M parameters" in err  # 29.70 M - (2048*400+400) + (2048*10^6+10^6)
    assert "Traceback" not in err


def test_memory_limits_parse():
    assert parse_bytes("8G") == 8 * 10**9 and parse_bytes("512m") == 512 * 10**6
    assert parse_bytes("1000") == 1000
    with pytest.raises(CsnError, match="CSNSPEC_MEMORY_LIMIT"):
        parse_bytes("lots")


def test_verify_says_the_size_of_a_model_that_fits(tmp_path, capsys, monkeypatch):
    from csnspec import verify

    spec = tmp_path / "tiny.csn"
    shutil.copy(ROOT / "tests" / "data" / "tiny-ircsn.csn", spec)
    said = []

    def comparison_not_run(net, **options):
        # what was said before any model is built; the comparison itself is test_verify's
        said.append(capsys.readouterr().err)
        return verify.Result(net.name, "", tuple(net.input), options["batch"])

    monkeypatch.setattr(verify, "compare", comparison_not_run)
    assert main(["verify", str(spec), "--input", "3x4x32x32"]) == 0
    assert said and said[0].startswith("tiny-ircsn: 0.")
    assert "M parameters" in said[0] and "verify needs about" in said[0]
