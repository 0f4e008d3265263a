"""Weights in: map the checkpoints of public CSN implementations onto a spec's generated model.

    >>> from csnspec.weights import import_checkpoint
    >>> imported = import_checkpoint("CSN_32x2_R101.pyth", csnspec.load("r101.csn"),
    ...                              "pytorchvideo", out="r101.safetensors")

See docs/weights.md for the layouts (PyTorchVideo, VMZ PyTorch and Caffe2, MMAction2).
"""

from .importer import Imported, import_checkpoint, map_state
from .layouts import LAYOUTS, SOURCES, target_shapes

__all__ = ["LAYOUTS", "SOURCES", "Imported", "import_checkpoint", "map_state", "target_shapes"]
