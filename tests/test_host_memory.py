"""`reuse_freed_memory`: a large block freed by a worker thread is reused, not mapped afresh
(which costs XLA:CPU a page fault per 4 KiB of its temporaries on every step)."""

import os
import subprocess
import sys

import pytest

# A worker thread (as XLA's are) allocates, fills and frees 64 MiB three times; the page faults
# of the last round are printed. Python's bytes of that size come straight from malloc.
PROBE = """
import resource, sys, threading
from csnspec.train.host_memory import reuse_freed_memory
print(reuse_freed_memory() if sys.argv[1] == "reuse" else "skipped")
faults = []
def work():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = b"\\x01" * (64 << 20)
        del block
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(faults[-1])
"""


def probe(mode: str, **env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux")
def test_a_freed_block_is_reused_instead_of_mapped_again():
    pages = (64 << 20) // 4096
    applied, faults = probe("reuse")
    assert applied == "True"
    assert faults < pages // 20
    # the same round with glibc's defaults faults every page in again: what the setting removes
    _, default_faults = probe("default")
    assert default_faults > pages // 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux")
def test_the_users_own_malloc_settings_stand():
    applied, _ = probe("reuse", MALLOC_ARENA_MAX="4")
    assert applied == "False"
