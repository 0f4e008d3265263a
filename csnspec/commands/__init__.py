"""CLI subcommands, one module each, with `register(subparsers)`; `csnspec.cli` loads them.

Each module's top level imports nothing heavy (no torch, no jax): `csnspec stats` must stay fast.
Heavy imports go inside the function that runs the command.
"""

COMMANDS = (
    "check",
    "stats",
    "fmt",
    "compile",
    "list",
    "weights",
    "verify",
    "data",
    "train",
    "eval",
    "search",
    "export",
    "extract",
)
