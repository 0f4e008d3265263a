"""The PyTorch backend's source text: layout, header, imports, determinism, hostile names."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SPECS
from generated_text import own_code

import csnspec
from csnspec.backends import module_name, render
from csnspec.cli import main
from csnspec.spec import Network

GENERATED = ROOT / "generated" / "torch"
TINY = "network tiny\ninput 3x4x32x32\nclasses 5\nstages ir-csn x [1,1,1,1]\n"


def _render(net: Network) -> str:
    return render(csnspec.lower(net), "torch")


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return {p.stem: _render(csnspec.load(p)) for p in SPECS}


def test_render_is_deterministic():
    net = csnspec.load(ROOT / "specs" / "mixed-tiny.csn")
    again = csnspec.load(ROOT / "specs" / "mixed-tiny.csn")  # a fresh parse, fresh lowering
    assert _render(net) == _render(again) == _render(net)


def test_compile_writes_identical_trees(tmp_path):
    specs = [str(p) for p in SPECS[:6]]
    for out in ("a", "b"):
        assert (
            main(["compile", *specs, "--backend", "torch", "--out-dir", str(tmp_path / out)]) == 0
        )
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert a == b and len(a) == 6


def test_generated_tree_is_up_to_date(capsys):
    """CI fails when generated/torch drifts from what the compiler writes now."""
    args = ["compile", *map(str, SPECS), "--backend", "torch", "--out-dir", str(GENERATED)]
    assert main([*args, "--check"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in GENERATED.glob("*.py")) == sorted(
        module_name(csnspec.load(p)) for p in SPECS
    )


def test_check_reports_a_stale_file(tmp_path, capsys):
    spec = str(ROOT / "specs" / "ircsn50.csn")
    target = tmp_path / "ir_csn_50.py"
    assert main(["compile", spec, "--backend", "torch", "-o", str(target)]) == 0
    assert main(["compile", spec, "--backend", "torch", "-o", str(target), "--check"]) == 0
    target.write_text(target.read_text() + "# edited\n")
    assert main(["compile", spec, "--backend", "torch", "-o", str(target), "--check"]) == 1
    assert "differs" in capsys.readouterr().err
    target.unlink()
    assert main(["compile", spec, "--backend", "torch", "-o", str(target), "--check"]) == 1


def _imports(tree: ast.Module) -> tuple[set[str], dict[str, set[str]]]:
    """Top-level imported module roots, and those imported inside each function."""
    top = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    inner: dict[str, set[str]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for n in ast.walk(fn):
                if isinstance(n, ast.Import):
                    inner.setdefault(fn.name, set()).update(a.name for a in n.names)
                elif isinstance(n, ast.ImportFrom):
                    inner.setdefault(fn.name, set()).add(n.module)
    return top, inner


def test_generated_modules_import_only_torch(sources):
    for name, text in sources.items():
        top, inner = _imports(ast.parse(text))
        depthwise = "class DepthwiseConv3d(" in text
        assert top == ({"os", "torch"} if depthwise else {"torch"}), name
        assert inner.pop("load_weights") == {"safetensors.torch"}, name
        # the inlined kernels import triton only inside the functions that run on CUDA
        assert all(m.split(".")[0] == "triton" for ms in inner.values() for m in ms), name


def test_importing_a_generated_module_loads_neither_csnspec_nor_safetensors():
    pytest.importorskip("torch")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(GENERATED / 'ir_csn_50.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.build(num_classes=3)\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('csnspec', 'jinja2', 'safetensors')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
@pytest.mark.parametrize(
    "config",
    [["--isolated"], ["--config", str(ROOT / "pyproject.toml")]],
    ids=["ruff-defaults", "repo-config"],
)
def test_generated_modules_are_formatted_and_lint_clean(tmp_path, config):
    """Formatted under ruff's defaults (line length 88; but for the inlined kernels, which
    are formatted as the repo is) and the repo's settings (100); lint-clean under the repo's."""
    long_name = "a" + "-b2" * 21  # 64 characters: the longest name a spec allows
    shutil.copytree(GENERATED, tmp_path / "gen")
    (tmp_path / "gen" / "long.py").write_text(
        _render(csnspec.parse(TINY.replace("tiny", long_name)))
    )
    if config == ["--isolated"]:  # the inlined kernels are formatted as the repo formats them
        for path in (tmp_path / "gen").iterdir():
            path.write_text(own_code(path.read_text()))
    lint = [] if config == ["--isolated"] else [["check"]]  # stripped text has loose names
    for cmd in [["format", "--check"], *lint]:
        done = subprocess.run(
            ["ruff", *cmd, *config, str(tmp_path / "gen")],
            check=False,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_code_lines_fit_in_88_columns(sources):
    for name, text in sources.items():
        long = [line for line in own_code(text).splitlines() if len(line) > 88]
        assert not long, (name, long)


def test_header_states_the_spec_and_its_complexity():
    path = ROOT / "specs" / "ipcsn152.csn"
    net = csnspec.load(path)
    text = _render(net)
    doc = ast.get_docstring(ast.parse(text))
    total = csnspec.stats(net).total
    digest = hashlib.sha256(csnspec.format_spec(net).encode()).hexdigest()
    assert doc.startswith("ip-csn-152: ")
    for fact in (
        f"csnspec       {csnspec.__version__}",
        f"spec sha256   {digest}",
        "input clip    3x32x224x224",
        "classes       400",
        f"multiply-adds   {total.flops:,} ({total.flops / 1e9:.2f} GFLOPs)",
        f"params          {total.params:,}",
        f"BN params       {total.bn_params:,}",
        f"interactions    {total.interactions:,}",
        f"activations     {total.activations:,}",
    ):
        assert fact in doc
    assert f'SPEC_SHA256 = "{digest}"' in text
    assert "INPUT_SHAPE = (3, 32, 224, 224)" in text


def test_block_classes_print_parameters_from_the_ir_refs(sources):
    ir = sources["ircsn50"]
    assert _classes(ir) == ["BottleneckD", "Stem", "Head", "IrCsn50"]
    # the depthwise conv reads the block's width and runs with the inlined kernels
    assert "= DepthwiseConv3d(\n            width,\n            kernel_size=(3, 3, 3)," in ir
    # defaults left out; repeated blocks built in a loop
    assert "BottleneckD(64, 64, 256, shortcut=True)," in ir
    assert "*(BottleneckD(256, 64, 256) for _ in range(2))," in ir
    assert "BottleneckD(256, 128, 512, stride=(2, 2, 2), shortcut=True)," in ir
    fact = sources["ircsn50-2plus1d"]
    assert "stride=(1, stride[1], stride[2])," in fact and "stride=(stride[0], 1, 1)," in fact
    assert "groups=4," in sources["simple-g-8-g4"]  # a literal group count


def _classes(text: str) -> list[str]:
    """The classes a generated module defines, less the inlined kernels'."""
    tree = ast.parse(own_code(text))
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def test_one_class_per_block_structure(sources):
    classes = _classes(sources["mixed-tiny"])
    assert classes == [
        "BottleneckD",
        "BottleneckDG",
        "SimpleGBlock",
        "BottleneckD2Plus1D",
        "Stem",
        "Head",
        "MixedTiny",
    ]
    simple_d = _classes(sources["simple-d-8"])
    assert simple_d == ["SimpleDBlock", "SimpleDBlockProject", "Stem", "Head", "SimpleD8"]


def test_a_network_class_never_shadows_a_block_class():
    text = _render(csnspec.parse(TINY.replace("tiny", "bottleneck-d")))
    assert _classes(text) == ["BottleneckD", "Stem", "Head", "BottleneckDNet"]


# -- hostile names ---------------------------------------------------------------------------

HOSTILE = [
    'x"""; import os; os.system("rm -rf /") #',
    "x'; import os #",
    "a\nimport os",
    "a\rb",
    "__init__",
    "__import__",
    "class",
    "None",
    "import",
    "x\u0430",  # Cyrillic a
    "\u0430bc",
    "a" * 65,
    "with space",
    "1abc",
    "",
    "a.b",
    "a\\b",
    "a{{b}}",
    "a{%b%}",
]


@pytest.mark.parametrize("bad", HOSTILE, ids=[ascii(b)[:20] for b in HOSTILE])
def test_hostile_names_in_spec_text_are_clear_errors(bad):
    text = TINY.replace("tiny", bad, 1)
    with pytest.raises(csnspec.CsnError) as err:
        csnspec.parse(text)
    assert "error:" in str(err.value)


@pytest.mark.parametrize("bad", HOSTILE, ids=[ascii(b)[:20] for b in HOSTILE])
def test_backend_refuses_hostile_names_that_skipped_validation(bad):
    good = csnspec.parse(TINY)
    net = Network.model_construct(
        **{k: getattr(good, k) for k in Network.model_fields} | {"name": bad}
    )
    low = csnspec.lower(net)
    assert low.name == bad
    with pytest.raises(csnspec.CsnError, match="generated code|reserved|identifier"):
        render(low, "torch")
    # a hand-made LoweredNetwork whose spec is fine but whose own name is not
    with pytest.raises(csnspec.CsnError):
        render(dataclasses.replace(csnspec.lower(good), name=bad), "torch")


@pytest.mark.parametrize("bad", ["head.fc; import os", "head.__class__", "head.f\u0441", "head."])
def test_backend_refuses_hostile_op_names(bad):
    low = csnspec.lower(csnspec.parse(TINY))
    fc = low.head.ops[-1]._replace(name=bad)
    head = dataclasses.replace(low.head, ops=low.head.ops[:-1] + (fc,))
    with pytest.raises(csnspec.CsnError):
        render(dataclasses.replace(low, head=head), "torch")


def test_backend_refuses_values_that_are_not_numbers():
    low = csnspec.lower(csnspec.parse(TINY))
    ops = tuple(
        op._replace(eps="0.1); import os  #") if op.kind == "batchnorm" else op
        for op in low.stem.ops
    )
    with pytest.raises(csnspec.CsnError, match="not a number"):
        render(dataclasses.replace(low, stem=dataclasses.replace(low.stem, ops=ops)), "torch")


def test_no_generated_file_contains_a_hostile_name():
    texts = [p.read_text(encoding="utf-8") for p in GENERATED.glob("*.py")]
    assert texts
    # the names that cannot occur in honest code ("class" and "__init__" do)
    for bad in [b for b in HOSTILE if len(b) > 4 and (not b.isidentifier() or not b.isascii())]:
        assert not any(bad in t for t in texts), bad


def test_floats_are_printed_with_repr():
    text = _render(
        csnspec.parse(TINY.replace("stages", "norm batchnorm eps=1e-3 momentum=0.03\nstages"))
    )
    assert "eps=0.001, momentum=0.03)" in text
    assert Path(module_name(csnspec.parse(TINY))).name == "tiny.py"


# -- one emitter, two printers ---------------------------------------------------------------


def _flax_classes(text: str) -> list[str]:
    tree = ast.parse(own_code(text))
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize("name", ["bottleneck-d", "stem", "NETWORK", "head"])
def test_both_backends_name_classes_alike(sources, name):
    for path in SPECS[:6] + [ROOT / "specs" / "mixed-tiny.csn"]:
        low = csnspec.lower(csnspec.load(path))
        assert _classes(render(low, "torch")) == _flax_classes(render(low, "flax")), path
    low = csnspec.lower(csnspec.parse(TINY.replace("tiny", name)))
    torch_classes, flax_classes = _classes(render(low, "torch")), _flax_classes(render(low, "flax"))
    assert torch_classes == flax_classes
    assert torch_classes[-1].endswith("Net")  # never a block class, Stem, Head or NETWORK


@pytest.mark.parametrize("name", ["torch", "typing", "jax", "os", "numpy"])
def test_names_that_shadow_modules_are_refused_alike(name, tmp_path, capsys):
    net = csnspec.parse(TINY.replace("tiny", name))
    for backend in ("torch", "flax"):
        with pytest.raises(csnspec.CsnError, match="shadows the module"):
            render(csnspec.lower(net), backend)
    spec = tmp_path / "n.csn"
    spec.write_text(TINY.replace("tiny", name))
    assert main(["compile", str(spec), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    # pointed at the name where the spec writes it: line 1, column 9 ("network <name>")
    assert f"{spec}:1:9: error: network name '{name}'" in err
    assert err.splitlines()[2].strip() == "^" * len(name)
    assert not (tmp_path / f"{name}.py").exists()


def test_a_literal_group_count_becomes_a_class_parameter():
    text = TINY.replace(
        "stages ir-csn x [1,1,1,1]",
        "stage simple-G g=2 x 1 width=16\nstage simple-G g=4 x 1 width=32 stride=1x2x2",
    )
    low = csnspec.lower(csnspec.parse(text))
    for backend in ("torch", "flax"):
        source = render(low, backend)
        assert _flax_classes(source).count("SimpleGBlock") == 1, backend
        call = "groups=groups" if backend == "torch" else "feature_group_count=groups"
        assert "groups: int" in source and call in source, backend


def test_modules_without_depthwise_convs_carry_no_kernels(sources):
    assert (
        "DepthwiseConv3d" not in sources["resnet3d50"] and "import os" not in sources["resnet3d50"]
    )
    flax = render(csnspec.lower(csnspec.load(ROOT / "specs" / "resnet3d50.csn")), "flax")
    assert "DepthwiseConv" not in flax and "jax_depthwise" not in flax


def test_compile_fixes_the_depthwise_default_and_states_it(tmp_path, capsys):
    spec = str(ROOT / "specs" / "ircsn50.csn")
    out = tmp_path / "m.py"
    assert main(["compile", spec, "--depthwise", "native", "-o", str(out)]) == 0
    text = out.read_text()
    assert 'DEPTHWISE = "native"' in text and "depthwise     native" in text
    assert main(["compile", spec, "--backend", "flax", "--depthwise", "shift", "-o", str(out)]) == 0
    assert 'DEPTHWISE = "shift"' in out.read_text()
    capsys.readouterr()
    assert main(["compile", spec, "--depthwise", "fast", "-o", str(tmp_path / "x.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--depthwise: error:") and "auto, native, cpu, triton" in err
    assert not (tmp_path / "x.py").exists()


def test_load_module_policy():
    from csnspec.backends import load_module

    low = csnspec.lower(csnspec.parse(TINY))
    a, b = load_module(low, "torch"), load_module(low, "torch")
    assert a is not b and a.__name__ == b.__name__  # fresh module, one deterministic name
    assert sys.modules[a.__name__] is b
    assert a.__name__.startswith("csnspec_generated_torch_tiny_")
    native = load_module(low, "torch", depthwise="native")
    assert native.__name__ != a.__name__ and native.DEPTHWISE == "native"
    import inspect

    assert "class Tiny(" in inspect.getsource(a.Tiny)  # what TorchScript reads
