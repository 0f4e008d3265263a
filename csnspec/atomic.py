"""The one file writer: a temp file in the target folder, fsync, then rename over the target.

Every file csnspec writes (generated code, `fmt -w`, weights, checkpoints, run records) goes
through `write_bytes`, which refuses what must not be replaced, with one message naming the path:

* an empty path, a folder, a path under a regular file, a folder it cannot write to;
* anything but a regular file or a new path (a device node, a FIFO, a socket): renaming over it
  would replace the node itself;
* one of the command's inputs (`inputs=`), e.g. `compile -o spec.csn`.

A symlink is followed: the file it points to is replaced and the link kept (as `cp` and editors
do); a dangling link creates its target. Temp files are named `.NAME.PID.RANDOM.tmp`; those a
killed writer left beside the same target (their process is gone) are removed on the next write.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import CsnError


def write_bytes(path, data: bytes, *, inputs=()) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half of it."""
    target = check_target(path, inputs)
    _make_folder(target.parent, path)
    try:
        mode = target.stat().st_mode & 0o7777  # keep the mode of the file being replaced
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # what a plain open() would give (mkstemp makes 0600)
    remove_stale_temps(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
    except OSError as err:
        raise _os_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):
            raise _os_error(path, err) from None
        raise


def write_text(path, text: str, *, inputs=()) -> None:
    write_bytes(path, text.encode("utf-8"), inputs=inputs)


def check_target(path, inputs=()) -> Path:
    """The real path `write_bytes` would replace, or a CsnError saying why it must not.

    Commands call it for every output before doing any work, so a refused output leaves
    nothing written."""
    if path is None or str(path) == "":
        raise CsnError("the output path is empty", hint="give a file name, e.g. -o model.py")
    shown = str(path)
    if "\0" in shown:
        raise CsnError("the output path holds a NUL character", filename=repr(shown))
    target = Path(os.path.realpath(path))  # follow symlinks: replace the file, keep the link
    try:
        st = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        st = None  # a new path, or one under a file (reported below)
    except OSError as err:
        raise _os_error(shown, err) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise CsnError(
                "the output is a folder, not a file",
                filename=shown,
                hint="give a file name inside it",
            )
        if not stat.S_ISREG(st.st_mode):
            raise CsnError(
                f"the output is a {_kind(st.st_mode)}, not a regular file; csnspec replaces only "
                "regular files",
                filename=shown,
            )
    for given in inputs:
        if given is not None and str(given) != "" and _same(target, given):
            raise CsnError(
                f"the output is also an input ({given}); csnspec will not write over its input",
                filename=shown,
                hint="choose another output path",
            )
    blocker = next((p for p in target.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise CsnError(f"{blocker} is a file, not a folder", filename=shown)
    return target


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files that killed writers left beside `target`; returns them."""
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    prefix = f".{target.name}."
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # another process is writing the same file right now
        try:
            os.unlink(target.parent / name)
            removed.append(target.parent / name)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier write that was interrupted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _same(target: Path, other) -> bool:
    try:
        return os.path.samefile(target, other)
    except OSError:
        return target == Path(os.path.realpath(other))


def _make_folder(folder: Path, shown) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CsnError(f"{folder} is a file, not a folder", filename=str(shown)) from None
    except OSError as err:
        raise _os_error(shown, err) from None


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _os_error(path, err: OSError) -> CsnError:
    reasons = {
        errno.EACCES: "permission denied: cannot write in that folder",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "is a folder, not a file",
        errno.ENAMETOOLONG: "the file name is too long",
    }
    reason = reasons.get(err.errno, err.strerror or str(err))
    return CsnError(f"cannot write the file: {reason}", filename=str(path))
