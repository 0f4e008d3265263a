"""Hostile checkpoints, built in the test: each is one message naming the file, never a crash, a
hang or a traceback (issue 14 items 13-15)."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from test_weights import spec, vmz_state  # noqa: F401 (a fixture)

import csnspec
from csnspec.errors import CsnError
from csnspec.weights import import_checkpoint, map_state
from csnspec.weights.convert import convert_file, torch_shapes
from csnspec.weights.io import checked_values, read_checkpoint, read_safetensors
from csnspec.weights.pickles import PickleRefused, scan

ROOT = Path(__file__).resolve().parent.parent

# -- pickles built opcode by opcode ----------------------------------------------------------

PROTO2 = b"\x80\x02"


def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def deep_key_pickle(depth: int) -> bytes:
    """{((((),),),...): {}} with the key nested `depth` tuples deep."""
    return PROTO2 + b"}" + b")" + b"\x85" * depth + b"}" + b"s" + b"."


def memo_bomb_pickle(depth: int) -> bytes:
    """{t_depth: {}} where t_i = (t_{i-1}, t_{i-1}) by memo reference: 2**depth leaves."""
    out = PROTO2 + b"}" + b")" + b"q\x000"  # EMPTY_TUPLE, BINPUT 0, POP
    for i in range(1, depth + 1):  # BINGET, BINGET, TUPLE2, BINPUT, POP
        out += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86" + b"q" + bytes([i]) + b"0"
    return out + b"h" + bytes([depth]) + b"}" + b"s" + b"."


def blobs_pickle(value_ops: bytes) -> bytes:
    """{'blobs': {'conv1_w': <value_ops>}}."""
    return PROTO2 + b"}" + _str("blobs") + b"}" + _str("conv1_w") + value_ops + b"ss."


def test_the_pickle_builders_make_what_they_say():
    key = next(iter(pickle.loads(deep_key_pickle(3))))
    assert key == ((((),),),)
    bomb = next(iter(pickle.loads(memo_bomb_pickle(2))))
    assert bomb == (((), ()), ((), ()))
    assert len(memo_bomb_pickle(60)) < 600


def torch_zip_with(data_pkl: bytes) -> bytes:
    """A torch.save zip whose data.pkl is replaced."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for item in src.infolist():
            z.writestr(item, data_pkl if item.filename.endswith("data.pkl") else src.read(item))
    return out.getvalue()


@pytest.mark.parametrize("suffix", [".pkl", ".pth", "zip.pth"])
@pytest.mark.parametrize(
    "data, words",
    [
        (deep_key_pickle(200_000), "nest more than"),
        (memo_bomb_pickle(60), "memo references"),
    ],
    ids=["deep-key", "memo-bomb"],
)
def test_deep_and_exploding_keys_are_refused_without_building_them(tmp_path, suffix, data, words):
    path = tmp_path / f"bomb{suffix.removeprefix('zip')}"
    path.write_bytes(torch_zip_with(data) if suffix.startswith("zip") else data)
    with pytest.raises(CsnError, match=words) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: error:")


def test_the_cli_survives_a_deep_key_in_a_subprocess(tmp_path):
    # a SIGSEGV would kill pytest itself: this one runs where a crash is only a return code
    path = tmp_path / "deep.pth"
    path.write_bytes(torch_zip_with(deep_key_pickle(200_000)))
    spec_path = ROOT / "tests" / "data" / "tiny-ircsn.csn"
    cmd = [sys.executable, "-m", "csnspec.cli", "weights", "import", "--from", "vmz", str(path)]
    cmd += ["--spec", str(spec_path), "-o", str(tmp_path / "w.safetensors")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{path}: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "w.safetensors").exists()


# -- numpy arrays that are not arrays of numbers ---------------------------------------------


def _array_pickle(arr) -> bytes:
    return pickle.dumps({"blobs": {"conv1_w": arr}}, protocol=2)


NDARRAY_REDUCE = b"cnumpy\nndarray\n" + b"K\x02\x85" + _str("O") + b"\x86R"  # ndarray((2,), 'O')
BIG_RECONSTRUCT = (
    b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    + b"\x8a\x06\x00\x00\x00\x00\x00\x08\x85"  # (2**43,): 8 TiB of bytes
    + b"C\x01b\x87R"
)


@pytest.mark.parametrize(
    "data, words",
    [
        (blobs_pickle(NDARRAY_REDUCE), "numpy.ndarray"),
        (blobs_pickle(BIG_RECONSTRUCT), "larger than the file"),
        (_array_pickle(np.array(["2020-01-01"], dtype="M8[D]")), "datetime64"),
        (_array_pickle(np.array(["ab"])), "str"),
        (_array_pickle(np.array([b"ab"])), "bytes"),
        (_array_pickle(np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])), "void"),
        (_array_pickle(np.array([1, "x"], dtype=object)), "Python objects"),
    ],
    ids=["object-via-reduce", "8TiB", "datetime64", "str", "bytes", "structured", "object"],
)
def test_caffe2_arrays_of_anything_but_numbers_are_refused(tmp_path, data, words):
    path = tmp_path / "blobs.pkl"
    path.write_bytes(data)
    with pytest.raises(CsnError, match=words) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: error: cannot read this .pkl")


def test_an_8tib_shape_with_a_small_buffer_is_refused(tmp_path):
    data = _array_pickle(np.zeros(2, "f4")).replace(
        b"K\x02\x85", b"\x8a\x06\x00\x00\x00\x00\x00\x08\x85"
    )
    assert data != _array_pickle(np.zeros(2, "f4"))
    path = tmp_path / "big.pkl"
    path.write_bytes(data)
    with pytest.raises(CsnError, match=r"big\.pkl: error: cannot read this \.pkl"):
        read_checkpoint(path)


# -- .pth files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, words",
    [
        ({1: torch.zeros(2), 2: torch.zeros(2)}, "keys must be names; found 1, 2"),
        ({(1, "a"): torch.zeros(2)}, r"found \(1, 'a'\)"),
        ({"w": torch.empty(2, device="meta")}, r"w \(meta\)"),
        ({"w": torch.eye(2).to_sparse()}, r"w \(sparse_coo\)"),
    ],
    ids=["int-keys", "tuple-keys", "meta", "sparse"],
)
def test_pth_files_with_odd_keys_or_tensors(tmp_path, obj, words):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(CsnError, match=words) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: error:")


def test_a_text_file_named_pth(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("experiment notes: lr 0.1\n")
    with pytest.raises(CsnError, match="not a readable PyTorch checkpoint") as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"{path}: error:")


# -- values a float32 model cannot use -------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.int8, torch.int64, torch.complex64, torch.float8_e4m3fn]
)
def test_non_float_weights_are_refused_by_name(vmz_state, dtype):  # noqa: F811
    state = dict(vmz_state)
    state["fc.weight"] = state["fc.weight"].to(dtype)
    with pytest.raises(CsnError, match=r"not real floating point: fc\.weight \(") as err:
        map_state(state, csnspec.lower(spec()), "vmz", filename="ckpt.pth")
    assert str(err.value).startswith("ckpt.pth: error:")


def test_non_finite_weights_are_refused_unless_allowed(vmz_state, tmp_path):  # noqa: F811
    state = dict(vmz_state)
    state["fc.bias"] = state["fc.bias"].clone()
    state["fc.bias"][0] = float("nan")
    state["stem.0.weight"] = state["stem.0.weight"].clone()
    state["stem.0.weight"].view(-1)[3] = float("inf")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(CsnError, match=r"NaN or inf values: stem\.0\.weight, fc\.bias") as err:
        import_checkpoint(path, spec(), "vmz", out=tmp_path / "w.safetensors")
    assert "--allow-nonfinite" in str(err.value)
    assert not (tmp_path / "w.safetensors").exists()
    imported = import_checkpoint(
        path, spec(), "vmz", out=tmp_path / "w.safetensors", allow_nonfinite=True
    )
    assert torch.isnan(imported.tensors["head.fc.bias"][0])
    assert any("NaN or inf" in n for n in imported.notes)


def test_half_precision_weights_are_widened_and_counters_kept():
    t = torch.tensor([1.5, -2.25])
    named = {
        "a.weight": t.to(torch.bfloat16),
        "b.weight": t.to(torch.float16),
        "c.weight": t.double(),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    out, notes = checked_values(named, "w.safetensors")
    for k in ("a.weight", "b.weight", "c.weight"):
        assert out[k].dtype == torch.float32 and torch.equal(out[k], t)
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert notes == ["bfloat16, float16, float64 tensors converted to float32"]


# -- safetensors in `weights convert` and `eval` ---------------------------------------------


def _tiny_low():
    return csnspec.lower(csnspec.load(ROOT / "tests" / "data" / "tiny-ircsn.csn"))


def _torch_weights(low, dtype):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in torch_shapes(low).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros((), dtype=torch.long)
        else:
            out[k] = torch.rand(shape, generator=gen).to(dtype)
    return out, save_file


def test_bf16_safetensors_convert_and_fp8_is_refused(tmp_path):
    low = _tiny_low()
    tensors, save_file = _torch_weights(low, torch.bfloat16)
    src = tmp_path / "bf16.safetensors"
    save_file(tensors, src)
    convert_file(low, src, tmp_path / "flax.safetensors")
    back, _, _ = read_safetensors(tmp_path / "flax.safetensors")
    fc = back["head.fc.kernel"]
    assert fc.dtype == np.float32
    np.testing.assert_array_equal(fc, tensors["head.fc.weight"].float().numpy().T)
    tensors["head.fc.weight"] = tensors["head.fc.weight"].float().to(torch.float8_e5m2)
    save_file(tensors, src)
    with pytest.raises(CsnError, match=r"head\.fc\.weight \(float8_e5m2\)") as err:
        convert_file(low, src, tmp_path / "again.safetensors")
    assert str(err.value).startswith(f"{src}: error:")
    assert not (tmp_path / "again.safetensors").exists()


def test_eval_weights_are_checked_and_labelled(tmp_path):
    from csnspec.train.eval_run import load_weights

    low = _tiny_low()
    tensors, save_file = _torch_weights(low, torch.bfloat16)
    path = tmp_path / "w.safetensors"
    save_file(tensors, path)
    arrays = load_weights(path)
    assert arrays["head.fc.weight"].dtype == np.float32
    tensors["head.fc.bias"] = torch.full_like(tensors["head.fc.bias"], float("inf"))
    save_file(tensors, path)
    with pytest.raises(CsnError, match=r"NaN or inf values: head\.fc\.bias") as err:
        load_weights(path)
    assert str(err.value).startswith(f"{path}: error:")
    assert np.isinf(load_weights(path, allow_nonfinite=True)["head.fc.bias"]).all()
    with pytest.raises(CsnError, match="no such weights file") as err:
        load_weights(tmp_path / "missing.safetensors")
    assert str(err.value).startswith(f"{tmp_path / 'missing.safetensors'}: error:")


# -- fuzz: any bytes under a checkpoint's name give tensors or one CsnError --------------------


_VALID_PKL = _array_pickle(np.arange(6, dtype="f4").reshape(2, 3))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_VALID_PKL) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.integers(1, len(_VALID_PKL)),
)
def test_mutated_pickles_give_arrays_or_one_message(tmp_path, edits, cut):
    data = bytearray(_VALID_PKL)
    for at, byte in edits:
        data[at] = byte
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(bytes(data[:cut]))
    try:
        state = read_checkpoint(path)
    except CsnError as err:
        assert str(err).startswith(f"{path}: error:")
    else:
        assert all(isinstance(v, torch.Tensor) for v in state.values())


nested = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(obj=nested, protocol=st.integers(2, 5))
def test_the_scan_accepts_ordinary_pickles(obj, protocol):
    scan(pickle.dumps(obj, protocol=protocol))  # raises PickleRefused if it would refuse


@given(data=st.binary(max_size=200))
def test_the_scan_of_random_bytes_refuses_or_passes(data):
    try:
        scan(data)
    except PickleRefused:
        pass


def test_legacy_torch_files_are_scanned_and_still_read(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save(
        {"state_dict": {"a.weight": torch.ones(2, 3)}}, path, _use_new_zipfile_serialization=False
    )
    assert torch.equal(read_checkpoint(path)["a.weight"], torch.ones(2, 3))
