"""Output paths: the one writer (csnspec.atomic) and `compile`, `fmt -w`, `weights` through it.

Issue 14 items 9-12: a folder, a path under a file, an unwritable folder, a device node, an
empty path or an input as the output each give one message naming the path and exit 2; stale
temp files of a killed writer are removed by the next write to the same target.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from csnspec.atomic import check_target, remove_stale_temps, write_text
from csnspec.cli import main
from csnspec.errors import CsnError

SPEC = Path(__file__).parent / "data" / "tiny-ircsn.csn"


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.csn"
    shutil.copy(SPEC, path)
    return path


def _fails(capsys, argv, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("error:") == 1, err
    for w in words:
        assert w in err, err
    return err


def test_compile_to_an_existing_folder(tmp_path, spec, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _fails(capsys, ["compile", str(spec), "-o", str(out)], f"{out}: error:", "folder")


def test_compile_under_a_regular_file(tmp_path, spec, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(capsys, ["compile", str(spec), "-o", str(blocker / "x.py")], "is a file, not a folder")
    _fails(capsys, ["compile", str(spec), "--out-dir", str(blocker)], f"{blocker}: error:")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_compile_into_an_unwritable_folder(tmp_path, spec, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _fails(capsys, ["compile", str(spec), "-o", str(locked / "m.py")], "permission denied")
    finally:
        locked.chmod(0o700)
    assert not list(locked.iterdir())


def test_an_unwritable_folder_is_a_message_even_as_root(tmp_path, monkeypatch):
    # root ignores modes: make the temp file creation fail the way a read-only folder does
    import errno
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(CsnError, match="permission denied") as err:
        write_text(tmp_path / "m.py", "x")
    assert str(err.value).startswith(f"{tmp_path / 'm.py'}: error:")


def test_a_device_or_fifo_is_never_replaced(tmp_path, spec, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _fails(capsys, ["compile", str(spec), "-o", str(fifo)], "FIFO", "not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(CsnError, match="character device"):
        check_target("/dev/null")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.py"
    real.write_text("old")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "dangling.py"
    dangling.symlink_to(tmp_path / "made.py")
    write_text(dangling, "made")
    assert (tmp_path / "made.py").read_text() == "made"


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "null.py"
    link.symlink_to("/dev/null")
    with pytest.raises(CsnError, match="character device"):
        write_text(link, "x")


def test_empty_output_paths_are_refused(tmp_path, spec, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(capsys, ["compile", str(spec), "-o", ""], "-o is empty")
    _fails(capsys, ["compile", str(spec), "--out-dir", ""], "--out-dir is empty")
    assert not (tmp_path / "generated").exists()


def test_the_spec_itself_is_never_overwritten(tmp_path, spec, capsys):
    before = spec.read_bytes()
    _fails(capsys, ["compile", str(spec), "-o", str(spec)], "is also an input")
    alias = tmp_path / "alias.csn"
    alias.symlink_to(spec)
    _fails(capsys, ["compile", str(spec), "-o", str(alias)], "is also an input")
    assert spec.read_bytes() == before


def test_weights_import_refuses_to_write_over_its_checkpoint(tmp_path, spec, capsys):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"not read: refused before")
    _fails(
        capsys,
        ["weights", "import", "--from", "vmz", str(ckpt), "--spec", str(spec), "-o", str(ckpt)],
        "is also an input",
    )
    assert ckpt.read_bytes() == b"not read: refused before"


def test_a_duplicate_compile_target_is_labelled_with_the_target(tmp_path, spec, capsys):
    twin = tmp_path / "twin.csn"
    shutil.copy(spec, twin)
    out = tmp_path / "gen"
    err = _fails(capsys, ["compile", str(spec), str(twin), "--out-dir", str(out)], "both name")
    assert err.startswith(str(out)), err
    assert "<spec>" not in err


def test_stale_temps_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "model.py"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    stale = [
        tmp_path / f".model.py.{dead.stdout.strip()}.abc123.tmp",  # a process that is gone
        tmp_path / ".model.py.k2j3h4.tmp",  # the older naming, no pid
    ]
    live = tmp_path / f".model.py.{os.getppid()}.zzz.tmp"  # a writer still running
    other = tmp_path / ".other.py.1.abc.tmp"  # another target's
    for p in [*stale, live, other]:
        p.write_text("half")
    write_text(target, "whole")
    assert target.read_text() == "whole"
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
    assert remove_stale_temps(target) == []


def test_a_killed_compile_leaves_temps_the_next_compile_removes(tmp_path, spec):
    out = tmp_path / "model.py"
    code = (
        "import os, sys, csnspec.atomic as a\n"
        "real = os.replace\n"
        "def die(*args): os._exit(9)\n"  # killed between writing the temp file and the rename
        "os.replace = die\n"
        "from csnspec.cli import main\n"
        f"main(['compile', {str(spec)!r}, '-o', {str(out)!r}])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
    assert proc.returncode == 9
    left = list(tmp_path.glob(".model.py.*.tmp"))
    assert len(left) == 1 and not out.exists()
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    assert out.is_file() and not list(tmp_path.glob(".model.py.*.tmp"))


def test_fmt_write_uses_the_same_writer(tmp_path, monkeypatch):
    path = tmp_path / "messy.csn"
    path.write_text(SPEC.read_text().replace("\n", "\n\n", 1), encoding="utf-8")
    seen = []
    from csnspec import atomic

    real = atomic.write_bytes
    monkeypatch.setattr(atomic, "write_bytes", lambda p, d, **kw: (seen.append(p), real(p, d)))
    assert main(["fmt", "-w", str(path)]) == 0
    assert seen == [str(path)]


# -- errors about a file other than the spec are labelled with that file (item 16) -------


def test_data_list_errors_are_labelled_with_the_list(tmp_path):
    from csnspec.data.dataset import open_index

    bad = tmp_path / "list.csv"
    bad.write_text("path,label\nclip.mp4\n")  # a line without a label is skipped (by line)
    with pytest.raises(CsnError) as err:
        open_index(bad)
    assert str(err.value).startswith(f"{bad}: error: no usable video (1 entries skipped)")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CsnError) as err:
        open_index(empty)
    assert str(err.value).startswith(f"{empty}: error: no class folders")
    with pytest.raises(CsnError) as err:
        open_index(tmp_path / "nothing")
    assert str(err.value).startswith(f"{tmp_path / 'nothing'}: error: no such dataset")


def test_errors_about_no_file_are_not_labelled_spec():
    assert (
        str(CsnError("--batch must be at least 1")) == "csnspec: error: --batch must be at least 1"
    )


def test_weights_convert_refuses_to_write_over_its_input(tmp_path, spec, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"refused before it is read")
    _fails(
        capsys,
        ["weights", "convert", "--spec", str(spec), str(weights), str(weights)],
        f"{weights}: error:",
        "is also an input",
    )
    assert weights.read_bytes() == b"refused before it is read"
