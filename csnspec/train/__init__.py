"""Training and evaluation of compiled specs.

`config` holds a run's settings (flags, config files, recipes, defaults from the spec), `run` sets
up the run folder, `fit` is the training skeleton both backends share (schedule, logging,
validation, checkpoints, summary) over a stepper per backend (`torch_loop`, `flax_loop`), and
`trainer.train` picks one. `finetune` matches `--init` weights to the spec; `eval_run` is
`csnspec eval`. Only the stepper and predictor modules import torch or jax, inside functions.
"""
