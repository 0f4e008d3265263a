"""Where each public CSN implementation keeps each parameter of a lowered network.

A layout walks the lowered IR (stem, then every block in order with its family, then the head)
and names, for every op that holds parameters, the module (or Caffe2 blob) that holds it in that
implementation's checkpoints. Tensor layouts agree across all of them (conv weights are
(out, in / groups, T, H, W), linear weights (out, in)), so only names differ; the importer
checks every shape against the IR. Sources: docs/weights.md and each project's model code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..ops import BatchNorm, Conv3d, Linear, LoweredNetwork, leaf_ops
from ..schema import BN_TENSORS, state_dict_schema
from ..spec import Family

PARAM_OPS = (Conv3d, BatchNorm, Linear)
BN_FIELDS = BN_TENSORS


def param_ops(ops):
    """The ops that hold parameters, a squeeze-excitation's convs included."""
    return (op for op in leaf_ops(ops) if isinstance(op, PARAM_OPS))


def target_shapes(low: LoweredNetwork) -> dict[str, tuple[int, ...]]:
    """The generated model's state-dict keys and shapes, in forward order."""
    return {tensor.name: tensor.shape for tensor in state_dict_schema(low)}


@dataclass(frozen=True)
class Layout:
    """One implementation's names.

    `slots` maps, per block family, an IR slot (the op name after "layerS.B.") to a module name
    template, formatted with s = stage number (1-based), b = index in the stage, n = index over
    the whole network. `head` is formatted with `last` (the stage count + 1) and `classes`.
    With `pool_modules`, a stage's pool (`pool=`) is a module of its own after the stage (as
    PyTorchVideo's stage1_pool in `blocks`), so s and last count the pools before them too.
    """

    name: str
    title: str
    eps: float  # the BatchNorm eps the implementation builds with
    stem: dict[str, str]
    slots: dict[Family, dict[str, str]]
    head: str
    # tensor field -> key suffix, for BN and for conv/linear; None: torch's `module.field`
    bn_fields: dict[str, str] | None = None
    fields: dict[str, str] | None = None
    pool_modules: bool = False
    # the stem's names when it has two convs (R(2+1)D's 1x7x7 + 3x1x1), where they differ
    stem2: dict[str, str] | None = None
    # head op name -> module, where the head has more than its fc (X3D's convs)
    head_ops: dict[str, str] | None = None

    def source_key(self, module: str, op, field: str) -> str | None:
        """The checkpoint key of one tensor of an op (None: this layout does not store it)."""
        if self.fields is None:
            return f"{module}.{field}"
        table = self.bn_fields if isinstance(op, BatchNorm) else self.fields
        return f"{module}_{table[field]}" if field in table else None

    def modules(self, low: LoweredNetwork, classes: int):
        """IR op name -> source module, and what this layout cannot hold: {reason: [names]}."""
        names: dict[str, str] = {}
        unsupported: dict[str, list[str]] = {}
        stem = self.stem
        if self.stem2 and any(op.name == "stem.conv2" for op in low.stem.ops):
            stem = self.stem2
        for op in low.stem.ops:
            if isinstance(op, PARAM_OPS):
                if op.name in stem:
                    names[op.name] = stem[op.name]
                else:
                    unsupported.setdefault(f"{self.title} has one stem conv", []).append(op.name)
        n = pools = 0
        for i, stage in enumerate(low.stages, start=1):
            s = i + pools
            if self.pool_modules and stage.pool is not None:
                pools += 1
            for b, block in enumerate(stage.blocks):
                table = self.slots.get(block.family)
                if table is None:
                    known = ", ".join(f.value for f in self.slots)
                    reason = f"{self.title} has no {block.family.value} blocks (only {known})"
                    unsupported.setdefault(reason, []).append(block.name)
                else:
                    for op in param_ops(block.residual + block.shortcut):
                        slot = op.name[len(block.name) + 1 :]
                        if slot in table:
                            names[op.name] = table[slot].format(s=s, b=b, n=n)
                        else:
                            reason = f"{self.title} has no `{slot}` in {block.family.value} blocks"
                            unsupported.setdefault(reason, []).append(op.name)
                n += 1
        for op in low.head.ops:
            if isinstance(op, PARAM_OPS) and self.head_ops and op.name in self.head_ops:
                names[op.name] = self.head_ops[op.name].format(last=self.last(low))
            elif isinstance(op, Linear):
                names[op.name] = self.head.format(last=self.last(low), classes=classes)
            elif isinstance(op, PARAM_OPS):
                unsupported.setdefault(f"{self.title} has no head {op.kind}", []).append(op.name)
        return names, unsupported

    def last(self, low: LoweredNetwork) -> int:
        """The index the head's template is formatted with."""
        pools = sum(st.pool is not None for st in low.stages) if self.pool_modules else 0
        return len(low.stages) + 1 + pools


def _prefixed(prefix: str, table: dict[str, str]) -> dict[str, str]:
    return {slot: prefix + module for slot, module in table.items()}


# -- PyTorchVideo (pytorchvideo/models/{csn,resnet,r2plus1d,stem,head}.py) --------------------

_PTV_BOTTLENECK = _prefixed(
    "blocks.{s}.res_blocks.{b}.",
    {
        "conv_a": "branch2.conv_a",
        "bn_a": "branch2.norm_a",
        "conv_b": "branch2.conv_b",
        "bn_b": "branch2.norm_b",
        "conv_c": "branch2.conv_c",
        "bn_c": "branch2.norm_c",
        "shortcut_conv": "branch1_conv",
        "shortcut_bn": "branch1_norm",
        # r2plus1d_r50's conv_b, Conv2plus1d (conv_t, norm, act, conv_xy): `factorize=1+2d`
        "conv_b_t": "branch2.conv_b.conv_t",
        "bn_b_t": "branch2.conv_b.norm",
        "conv_b_s": "branch2.conv_b.conv_xy",
    },
)


PYTORCHVIDEO = Layout(
    name="pytorchvideo",
    title="PyTorchVideo",
    eps=1e-5,
    stem={"stem.conv1": "blocks.0.conv", "stem.bn1": "blocks.0.norm"},
    # create_bottleneck_block groups only conv_b: plain, grouped and depthwise (ir-CSN)
    slots={
        Family.BOTTLENECK: _PTV_BOTTLENECK,
        Family.BOTTLENECK_G: _PTV_BOTTLENECK,
        Family.BOTTLENECK_D: _PTV_BOTTLENECK,
    },
    head="blocks.{last}.proj",
    pool_modules=True,  # create_resnet's stage1_pool (c2d_r50, i3d_r50) is blocks.2
)


# PyTorchVideo's X3D (pytorchvideo/models/x3d.py): a stem of two convs (create_x3d_stem's
# Conv2plus1d names the 1x3x3 conv `conv_t` and the channel-wise 5x1x1 one `conv_xy`), blocks
# whose norm_b is Sequential(BN, SqueezeExcitation or Identity) (fvcore's SE keeps its convs
# in `block`: 0 reduce, 2 expand), and a head of ProjectedPool convs before the fc `proj`.
_PTV_X3D = {
    **_PTV_BOTTLENECK,
    "bn_b": "blocks.{s}.res_blocks.{b}.branch2.norm_b.0",
    "se.reduce": "blocks.{s}.res_blocks.{b}.branch2.norm_b.1.block.0",
    "se.expand": "blocks.{s}.res_blocks.{b}.branch2.norm_b.1.block.2",
}

PYTORCHVIDEO_X3D = Layout(
    name="pytorchvideo-x3d",
    title="PyTorchVideo (X3D)",
    eps=1e-5,
    stem={
        "stem.conv1": "blocks.0.conv.conv_t",
        "stem.conv2": "blocks.0.conv.conv_xy",
        "stem.bn2": "blocks.0.norm",
    },
    slots={Family.X3D: _PTV_X3D},
    head="blocks.{last}.proj",
    head_ops={
        "head.conv1": "blocks.{last}.pool.pre_conv",
        "head.bn1": "blocks.{last}.pool.pre_norm",
        "head.conv2": "blocks.{last}.pool.post_conv",
    },
)


# -- VMZ, PyTorch port (pt/vmz/models/csn.py on torchvision's VideoResNet) -------------------

_TV_BOTTLENECK = {
    "conv_a": "conv1.0",
    "bn_a": "conv1.1",
    "conv_b": "conv2.0",
    "bn_b": "conv2.1",
    "conv_c": "conv3.0",
    "bn_c": "conv3.1",
    "shortcut_conv": "downsample.0",
    "shortcut_bn": "downsample.1",
}
# IPConv3DDepthwise is Sequential(1x1x1 conv, BN, depthwise conv), in conv2's first slot
_TV_IP = {**_TV_BOTTLENECK, "conv_ip": "conv2.0.0", "bn_ip": "conv2.0.1", "conv_b": "conv2.0.2"}
_TV_SIMPLE = {  # torchvision BasicBlock with Conv3DSimple / Conv3DNoTemporal (r3d_18, mc3_18)
    "conv_a": "conv1.0",
    "bn_a": "conv1.1",
    "conv_b": "conv2.0",
    "bn_b": "conv2.1",
    "shortcut_conv": "downsample.0",
    "shortcut_bn": "downsample.1",
}
# Conv2Plus1D is Sequential(1x3x3 conv, BN, ReLU, 3x1x1 conv) in the conv's first slot, the
# block's BN after it (`factorize=2+1d`: r2plus1d_18, VMZ's r2plus1d_34 and _152)
_TV_2PLUS1D = {
    "conv_a_s": "conv1.0.0",
    "bn_a_s": "conv1.0.1",
    "conv_a_t": "conv1.0.3",
    "conv_b_s": "conv2.0.0",
    "bn_b_s": "conv2.0.1",
    "conv_b_t": "conv2.0.3",
}
# the stem: BasicStem (conv, BN, ReLU) or R2Plus1dStem (conv, BN, ReLU, conv, BN, ReLU),
# with VMZ's max-pool after either
_TV_STEM = {
    "stem.conv1": "stem.0",
    "stem.bn1": "stem.1",
    "stem.conv2": "stem.3",
    "stem.bn2": "stem.4",
}


_TV_SLOTS = {
    fam: _prefixed("layer{s}.{b}.", table)
    for fam, table in (
        (Family.BOTTLENECK, _TV_BOTTLENECK | _TV_2PLUS1D),
        (Family.BOTTLENECK_D, _TV_BOTTLENECK),
        (Family.BOTTLENECK_IP, _TV_IP),
        (Family.SIMPLE, _TV_SIMPLE | _TV_2PLUS1D),
    )
}

VMZ_TORCH = Layout(
    name="vmz", title="VMZ (PyTorch)", eps=1e-3, stem=_TV_STEM, slots=_TV_SLOTS, head="fc"
)


# -- torchvision (torchvision/models/video/resnet.py: r3d_18, mc3_18, r2plus1d_18) -------------

TORCHVISION = Layout(
    name="torchvision", title="torchvision", eps=1e-5, stem=_TV_STEM, slots=_TV_SLOTS, head="fc"
)


# -- VMZ, Caffe2 blobs (c2/lib/models/builder/video_model.py; VMZ's converter
#    utilities/model_conversion/convert_models.py reads them the same way) -------------------

# Blocks are counted over the whole network (n). In ir blocks the conv counter skips 2
# because add_channelwise_conv increments it a second time.
_C2_SHORTCUT = {
    "shortcut_conv": "shortcut_projection_{n}",
    "shortcut_bn": "shortcut_projection_{n}_spatbn",
}
# R(2+1)D: the spatial half of conv j is `comp_n_conv_j_middle` (+ `_spatbn_j_middle`), the
# temporal half `comp_n_conv_j` (VMZ's video_model.py add_conv with is_decomposed; the names
# ig65m-pytorch's convert.py reads for r2plus1d_34)
_C2_2PLUS1D = {
    "conv_a_s": "comp_{n}_conv_1_middle",
    "bn_a_s": "comp_{n}_spatbn_1_middle",
    "conv_a_t": "comp_{n}_conv_1",
    "conv_b_s": "comp_{n}_conv_2_middle",
    "bn_b_s": "comp_{n}_spatbn_2_middle",
    "conv_b_t": "comp_{n}_conv_2",
}
_C2_BOTTLENECK = {
    "conv_a": "comp_{n}_conv_1",
    "bn_a": "comp_{n}_spatbn_1",
    "conv_b": "comp_{n}_conv_2",
    "bn_b": "comp_{n}_spatbn_2",
    "conv_c": "comp_{n}_conv_3",
    "bn_c": "comp_{n}_spatbn_3",
    **_C2_SHORTCUT,
}
_C2_IR = {
    **_C2_BOTTLENECK,
    "conv_b": "comp_{n}_conv_3",
    "bn_b": "comp_{n}_spatbn_3",
    "conv_c": "comp_{n}_conv_4",
    "bn_c": "comp_{n}_spatbn_4",
}
_C2_IP = {
    **_C2_BOTTLENECK,
    "conv_ip": "comp_{n}_conv_2_middle",
    "bn_ip": "comp_{n}_spatbn_2_middle",
}
_C2_SIMPLE = {
    "conv_a": "comp_{n}_conv_1",
    "bn_a": "comp_{n}_spatbn_1",
    "conv_b": "comp_{n}_conv_2",
    "bn_b": "comp_{n}_spatbn_2",
    **_C2_SHORTCUT,
}
C2_HEAD = re.compile(r"last_out_L(\d+)_[wb]\Z")


VMZ_CAFFE2 = Layout(
    name="vmz-caffe2",
    title="VMZ (Caffe2)",
    eps=1e-3,
    stem={"stem.conv1": "conv1", "stem.bn1": "conv1_spatbn_relu"},
    slots={
        Family.BOTTLENECK: _C2_BOTTLENECK | _C2_2PLUS1D,
        Family.BOTTLENECK_D: _C2_IR,
        Family.BOTTLENECK_IP: _C2_IP,
        Family.SIMPLE: _C2_SIMPLE | _C2_2PLUS1D,
    },
    stem2={
        "stem.conv1": "conv1_middle",
        "stem.bn1": "conv1_middle_spatbn_relu",
        "stem.conv2": "conv1",
        "stem.bn2": "conv1_spatbn_relu",
    },
    head="last_out_L{classes}",  # named after the class count
    # Caffe2 keeps no num_batches_tracked (the importer fills in zeros)
    bn_fields={"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"},
    fields={"weight": "w", "bias": "b"},
)


# -- MMAction2 (mmaction/models/backbones/resnet3d{,_csn}.py; mmcv ConvModule = conv, bn) ------

_MM_CSN = {
    "conv_a": "conv1.conv",
    "bn_a": "conv1.bn",
    "conv_b": "conv2.0.conv",
    "bn_b": "conv2.0.bn",
    "conv_c": "conv3.conv",
    "bn_c": "conv3.bn",
    "shortcut_conv": "downsample.conv",
    "shortcut_bn": "downsample.bn",
}
# CSNBottleneck3d 'ip': conv2 = Sequential(1x1x1 ConvModule, depthwise ConvModule)
_MM_IP = {
    **_MM_CSN,
    "conv_ip": "conv2.0.conv",
    "bn_ip": "conv2.0.bn",
    "conv_b": "conv2.1.conv",
    "bn_b": "conv2.1.bn",
}
# ResNet3d's Bottleneck3d and BasicBlock3d: conv2 is a ConvModule, not a Sequential
_MM_BOTTLENECK = {**_MM_CSN, "conv_b": "conv2.conv", "bn_b": "conv2.bn"}
_MM_SIMPLE = {
    "conv_a": "conv1.conv",
    "bn_a": "conv1.bn",
    "conv_b": "conv2.conv",
    "bn_b": "conv2.bn",
    "shortcut_conv": "downsample.conv",
    "shortcut_bn": "downsample.bn",
}


MMACTION2 = Layout(
    name="mmaction2",
    title="MMAction2",
    eps=1e-3,
    stem={"stem.conv1": "backbone.conv1.conv", "stem.bn1": "backbone.conv1.bn"},
    slots={
        fam: _prefixed("backbone.layer{s}.{b}.", table)
        for fam, table in (
            (Family.BOTTLENECK, _MM_BOTTLENECK),
            (Family.BOTTLENECK_D, _MM_CSN),
            (Family.BOTTLENECK_IP, _MM_IP),
            (Family.SIMPLE, _MM_SIMPLE),
        )
    },
    head="cls_head.fc_cls",
)


LAYOUTS = {
    lay.name: lay
    for lay in (PYTORCHVIDEO, PYTORCHVIDEO_X3D, VMZ_TORCH, VMZ_CAFFE2, MMACTION2, TORCHVISION)
}
# what `--from` takes; vmz covers both VMZ layouts
SOURCES = ("pytorchvideo", "vmz", "mmaction2", "torchvision")


def detect(source: str, keys) -> Layout | None:
    """The layout for `--from source` given the checkpoint's keys (None: cannot tell)."""
    if source == "vmz":
        keys = set(keys)
        if "conv1_w" in keys or any(k.startswith(("comp_", "last_out_L")) for k in keys):
            return LAYOUTS["vmz-caffe2"]
        if any(k.startswith(("stem.", "layer1.", "fc.")) for k in keys):
            return LAYOUTS["vmz"]
        return None
    if source == "pytorchvideo" and "blocks.0.conv.conv_t.weight" in set(keys):
        return LAYOUTS["pytorchvideo-x3d"]  # create_x3d_stem's Conv2plus1d
    return LAYOUTS[source]
