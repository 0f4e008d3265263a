"""The Flax backend: formatted, deterministic, IR-faithful source; attribute paths = IR op names."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT, SPECS
from generated_text import own_code
from hypothesis import given, settings
from strategies import networks

import csnspec
from csnspec.backends import load_module, render
from csnspec.errors import CsnError
from csnspec.spec import Network

pytest.importorskip("flax")


def _ruff(*args: str, text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "generated_model.py"
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", str(path)],
        check=False,
        cwd=tmp_path,  # no project config: ruff's defaults (line length 88)
        capture_output=True,
        text=True,
    )


def test_generated_flax_is_up_to_date():
    """CI fails when generated/flax drifts from what `csnspec compile` writes now."""
    files = [str(p.relative_to(ROOT)) for p in SPECS]
    cmd = ["compile", *files, "--backend", "flax", "--out-dir", "generated/flax", "--check"]
    proc = subprocess.run(
        [sys.executable, "-m", "csnspec.cli", *cmd],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_render_is_deterministic_and_imports_only_jax_and_flax():
    low = csnspec.lower(csnspec.load(ROOT / "specs" / "mixed-tiny.csn"))
    text = render(low, "flax")
    assert text == render(low, "flax")
    imports = {m.split(".")[0] for m in re.findall(r"^(?:from|import) (\S+)", text, re.MULTILINE)}
    assert imports <= {"__future__", "jax", "flax", "numpy"}
    assert "'SAME'" not in text and '"SAME"' not in text


def test_header_states_spec_hash_and_complexity():
    net = csnspec.load(ROOT / "specs" / "ircsn50.csn")
    low = csnspec.lower(net)
    text = render(low, "flax")
    digest = hashlib.sha256(csnspec.format_spec(net).encode()).hexdigest()
    total = csnspec.analyse(low).total
    assert f"spec sha256   {digest}" in text
    assert f"multiply-adds   {total.flops:,}" in text
    assert f"params          {total.params:,}" in text
    assert "csnspec       " + csnspec.__version__ in text


@pytest.mark.parametrize("torch_m, flax_m", [(0.1, "0.9"), (0.01, "0.99"), (0.5, "0.5")])
def test_batchnorm_momentum_is_translated_and_always_passed(torch_m, flax_m):
    net = csnspec.parse(
        f"network m\ninput 3x4x16x16\nclasses 3\nnorm batchnorm eps=1e-3 momentum={torch_m}\n"
        "stages ir-csn x [1,1,1,1]\n"
    )
    text = render(csnspec.lower(net), "flax")
    n_bn = sum(1 for op in csnspec.lower(net).ops() if op.kind == "batchnorm")
    calls = re.findall(r"= BatchNorm\((.*?)\)", text, re.DOTALL)  # nnx.BatchNorm subclass
    assert calls and all(f"momentum={flax_m}," in c and "epsilon=0.001," in c for c in calls)
    assert len(calls) <= n_bn  # classes share constructors; every one passes momentum


def test_hostile_names_are_refused():
    good = csnspec.load(ROOT / "specs" / "mixed-tiny.csn")
    for name in ["x; import os", "a\nimport os", "__import__", "class", "ab'c"]:
        bad = Network.model_construct(**{**dict(good), "name": name})
        with pytest.raises(CsnError):
            render(csnspec.lower(bad), "flax")


@settings(max_examples=15)
@given(net=networks(small=True))
def test_generated_source_is_ruff_clean(net, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ruff")
    text = render(csnspec.lower(net), "flax")
    # ruff's defaults for the module's own code; the repo's settings for the inlined kernels
    fmt = _ruff("format", "--check", "--diff", text=own_code(text), tmp_path=tmp_path)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr + "\n" + csnspec.format_spec(net)
    config = ("--config", str(ROOT / "pyproject.toml"))
    fmt = _ruff("format", *config, "--check", "--diff", text=text, tmp_path=tmp_path)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr + "\n" + csnspec.format_spec(net)
    lint = _ruff("check", *config, text=text, tmp_path=tmp_path)
    assert lint.returncode == 0, lint.stdout + "\n" + csnspec.format_spec(net)


@settings(max_examples=10)
@given(net=networks(small=True))
def test_state_paths_and_shapes_are_the_ir_op_names(net, tmp_path_factory):
    """What weight conversion relies on: every parameter sits at its IR op's dotted name."""
    import jax
    from flax import nnx

    from csnspec.weights.convert import flax_shapes

    low = csnspec.lower(net)
    module = load_module(low, "flax")
    model = nnx.eval_shape(module.build)
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    got = {
        ".".join(map(str, p)): tuple(v.get_raw_value().shape) for p, v in nnx.to_flat_state(state)
    }
    assert got == flax_shapes(low)
    x = jax.ShapeDtypeStruct((2, *low.input_shape[1:], low.input_shape[0]), "float32")
    model.eval()
    logits, blocks = nnx.eval_shape(lambda m, x: m(x, return_blocks=True), model, x)
    assert logits.shape == (2, *low.output_shape)
    for block in low.blocks():  # every block's output shape is the IR's, channels-last
        c, *thw = block.out_shape
        assert blocks[block.name].shape == (2, *thw, c)


def test_a_stem_of_max_pools_only_compiles():
    """Issue 14 item 1: a stem without weights gave an empty __init__ (invalid Python)."""
    import jax
    from flax import nnx

    net = csnspec.parse(
        "network pools\ninput 3x4x16x16\nclasses 3\nstem maxpool 1x3x3 stride=1x2x2\n"
        "stages ir-csn x [1,1,1,1]\n"
    )
    low = csnspec.lower(net)
    module = load_module(low, "flax")
    model = nnx.eval_shape(module.build)
    x = jax.ShapeDtypeStruct((2, *low.input_shape[1:], low.input_shape[0]), "float32")
    model.eval()
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, *low.output_shape)
