"""Import the publishers' model code without the parts that cannot load here.

torchvision's compiled ops (`torchvision::nms`, ...) do not load against this torch, so
`import torchvision` fails; its video ResNets are plain Python all the same. PyTorchVideo's
`pytorchvideo.models` imports `torchvision.ops.RoIAlign` only for a detection head. These
helpers put a stand-in `torchvision` package in sys.modules whose `models.video` subpackage
is the real one, read from the installed files (when torchvision is installed), and stub the
few names the model files import from elsewhere in torchvision.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def _package(name: str, path: str | None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [path] if path else []
    return module


def stub_torchvision() -> bool:
    """Install the stand-in torchvision (once); True if the real video models can be read."""
    if "torchvision" in sys.modules:
        return bool(sys.modules["torchvision"].__path__)
    from torch import nn

    spec = importlib.util.find_spec("torchvision")
    root = spec.submodule_search_locations[0] if spec else None
    ops = types.ModuleType("torchvision.ops")
    ops.RoIAlign = type("RoIAlign", (nn.Module,), {})  # PyTorchVideo's detection head only
    utils = types.ModuleType("torchvision.utils")
    utils._log_api_usage_once = lambda obj: None
    presets = types.ModuleType("torchvision.transforms._presets")
    presets.VideoClassification = object  # only named in the weight enums' transforms
    sys.modules.update(
        {
            "torchvision": _package("torchvision", root),
            "torchvision.ops": ops,
            "torchvision.utils": utils,
            "torchvision.transforms": _package("torchvision.transforms", None),
            "torchvision.transforms._presets": presets,
        }
    )
    if root:
        sys.modules["torchvision.models"] = _package("torchvision.models", root + "/models")
        sys.modules["torchvision.models.video"] = _package(
            "torchvision.models.video", root + "/models/video"
        )
    return root is not None


def torchvision_video_resnet():
    """torchvision.models.video.resnet, the real file (None when torchvision is not installed)."""
    if not stub_torchvision():
        return None
    return importlib.import_module("torchvision.models.video.resnet")


def pytorchvideo_models(name: str):
    """pytorchvideo.models.<name> (e.g. "hub.resnet", "csn")."""
    stub_torchvision()
    return importlib.import_module(f"pytorchvideo.models.{name}")
