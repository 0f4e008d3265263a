"""Training and evaluation of compiled specs: a shared run setup (`run`), one loop per backend
(`torch_loop`, `flax_loop`), the learning-rate schedule, checkpoints and evaluation metrics.

Only `torch_loop` imports torch and only `flax_loop` imports jax, inside the functions that run.
"""
