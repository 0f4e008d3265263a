"""The resumable results store of a search: append-only JSON lines, one record per finished trial.

`results.jsonl` gets each record as the trial finishes (write, flush, fsync), keyed by the hash
of the candidate's canonical text; on `--resume` the records are read back and those keys are
never run again. A record cut short by a kill (a last line without its newline) is ignored and
set apart on the next append, so no finished record is lost and none is half-read.
`started.jsonl` logs every trial as it starts, which shows what a killed search was doing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import CsnError

RESULTS = "results.jsonl"
STARTED = "started.jsonl"
META = "search.json"
DATA_OPTIONS = ("train", "val", "format", "root")  # the trained objective's dataset options


class Store:
    """Append-only records in `out_dir`. `sync_every` seconds bounds fsyncs for fast trials."""

    def __init__(self, out_dir, *, sync_every: float = 0.0):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sync_every = sync_every
        self.records: dict[str, dict] = {}
        self.torn = 0  # records cut short by a kill, found when reading
        self._read()
        # Held open for the whole search (closed by `close`): one append per finished trial.
        self._results = open(self.dir / RESULTS, "ab")  # noqa: SIM115
        self._started = open(self.dir / STARTED, "ab")  # noqa: SIM115
        self._last_sync = time.monotonic()
        self._dirty = False
        self._needs_newline = self._ends_torn(self.dir / RESULTS)

    def _read(self) -> None:
        path = self.dir / RESULTS
        if not path.exists():
            return
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    self.torn += 1  # the record being written when the search was killed
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.torn += 1
                    continue
                self.records[rec["key"]] = rec

    @staticmethod
    def _ends_torn(path: Path) -> bool:
        if not path.exists() or path.stat().st_size == 0:
            return False
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def started(self, key: str, **info) -> None:
        """Log that a trial starts (flushed and synced: this is what proves a re-run)."""
        line = json.dumps({"key": key, "time": time.time(), **info}, sort_keys=True) + "\n"
        self._started.write(line.encode("utf-8"))
        self._started.flush()
        os.fsync(self._started.fileno())

    def append(self, record: dict) -> None:
        """Add one finished trial's record, durably (subject to `sync_every`)."""
        if record["key"] in self.records:
            return
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        if self._needs_newline:
            data = b"\n" + data  # close the torn line so that it stays a line of its own
            self._needs_newline = False
        self._results.write(data)
        self._results.flush()
        self._dirty = True
        self.records[record["key"]] = record
        now = time.monotonic()
        if now - self._last_sync >= self.sync_every:
            self.sync()
            self._last_sync = now

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self._results.fileno())
            self._dirty = False

    def close(self) -> None:
        self.sync()
        self._results.close()
        self._started.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_meta(out_dir, meta: dict, *, resume: bool) -> None:
    """Refuse to mix searches in one folder, or to overwrite results without `--resume`."""
    from ..atomic import write_text

    out = Path(out_dir)
    path = out / META
    has_results = (out / RESULTS).exists() and (out / RESULTS).stat().st_size > 0
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CsnError(f"{path}: cannot read the search's settings ({err})") from None
        if not isinstance(old, dict):
            raise CsnError(f"{path}: cannot read the search's settings (not a JSON object)")
        if not resume and has_results:
            raise CsnError(
                "the folder already holds the results of a search",
                filename=str(out),
                hint="pass --resume to continue it, or give another --out folder",
            )
        if resume:
            for field in ("space_sha256", "objective"):
                if old.get(field) != meta.get(field):
                    raise CsnError(
                        f"the folder holds a search with another {field.replace('_sha256', '')} "
                        f"({old.get(field)!s:.40} there, {meta.get(field)!s:.40} now)",
                        filename=str(out),
                        hint="resume with the same space file and --objective, or give another --out",
                    )
            # scores on other videos are not comparable: the data flags must agree too
            was, now = old.get("trained_options") or {}, meta.get("trained_options") or {}
            for key in DATA_OPTIONS:
                if was.get(key) != now.get(key):
                    raise CsnError(
                        f"the folder holds a search with another --{key} "
                        f"({was.get(key)} there, {now.get(key)} now)",
                        filename=str(out),
                        hint=f"resume with --{key} as it was, or give another --out",
                    )
    elif has_results and not resume:
        raise CsnError(
            "the folder already holds results",
            filename=str(out),
            hint="pass --resume, or give another --out",
        )
    write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
