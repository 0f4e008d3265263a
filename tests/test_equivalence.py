"""Property test: the generated PyTorch and Flax models of random specs compute the same thing.

Each example renders both backends, converts a random PyTorch initialisation to Flax and runs
`csnspec.verify.compare`: eval and train forward block by block, running statistics after one
train step, and gradients, both models on their fast depthwise paths ("auto"). Few examples in
the `ci` profile (every distinct spec costs a JAX compile), and without compare's rows of each
fast path against its framework's native call (they build, and compile, the model once more per
path; test_kernels_torch and test_kernels_jax check those paths on random shapes, test_verify on
a shipped spec); `HYPOTHESIS_PROFILE=thorough` runs many more, with those rows. Every run draws
fresh examples from the session's seed (printed by conftest; `--hypothesis-seed=N` replays it),
and a failure prints the spec text to replay it with `csnspec verify`.
"""

import os

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from strategies import networks

pytest.importorskip("torch")
pytest.importorskip("flax")

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"


@settings(
    max_examples=100 if THOROUGH else 3,
    # Shrinking recompiles JAX at every step (minutes); the failure message already carries
    # the spec text to replay with `csnspec verify`, so the ci profile reports it unshrunk.
    phases=list(Phase) if THOROUGH else [Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(net=networks(small=True))
def test_torch_and_flax_agree(net):
    from csnspec import format_spec
    from csnspec.verify import compare

    spec = format_spec(net)
    note(spec)
    result = compare(net, seed=0, batch=2, impls=THOROUGH)
    assert result.ok, f"PyTorch and Flax disagree on this spec:\n\n{spec}\n{result.table()}"
