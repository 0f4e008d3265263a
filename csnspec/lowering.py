"""Spec IR to lowered IR: every block family of the paper's Figures 2-4 as primitive ops with shapes.

Shapes follow PyTorch's convolution arithmetic, out = floor((in + 2p - k) / s) + 1, so uneven
sizes are legal (7 -> 4 under stride 2). Semantic errors found here point at the spec token
that caused them, through the spans the parser recorded.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from math import gcd, lcm, prod

from .errors import CsnError
from .ops import (
    Add,
    AvgPool,
    BatchNorm,
    Block,
    BlockParams,
    Conv3d,
    Dropout,
    GlobalAvgPool,
    Linear,
    LoweredNetwork,
    LoweredStage,
    MaxPool,
    ReLU,
    Sequence,
    Sigmoid,
    SqueezeExcite,
    Swish,
)
from .spec import Family, Network

_DEPTHWISE = {Family.BOTTLENECK_D, Family.BOTTLENECK_DG, Family.BOTTLENECK_IP, Family.X3D}


def round_width(width: int, ratio: float, divisor: int = 8) -> int:
    """The reduced width of a squeeze-excitation: PyTorchVideo's `round_width(width, ratio)`
    (pytorchvideo/layers/utils.py): the nearest multiple of 8, at least 8, and not below 90 %
    of width * ratio."""
    exact = width * ratio
    out = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if out < 0.9 * exact:
        out += divisor
    return int(out)


_AXES = ("frames", "height", "width")


@lru_cache(maxsize=16)
def lower(net: Network) -> LoweredNetwork:
    """Lower a spec to its op tree.

    A pure function of the (frozen, hashable) spec; the last few results are kept, so that the
    semantic check of `csnspec.parse` and the reader that follows (stats, a backend) share one
    lowering. An error names the spec fields it is about (`CsnError.fields`); the parser,
    which knows where each field was written, turns them into a position.
    """
    return _Lowering(net).run()


class _Lowering:
    def __init__(self, net: Network):
        self.net = net
        self.eps = net.norm.eps
        self.momentum = net.norm.momentum

    def error(self, fields, message: str, hint: str | None = None) -> CsnError:
        """An error about the spec field path(s) `fields`, most specific first."""
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        return CsnError(message, hint=hint, fields=fields)

    def shape_after(self, shape, k, s, p, where, key):
        c, t, h, w = shape
        out = (
            (t + 2 * p[0] - k[0]) // s[0] + 1,
            (h + 2 * p[1] - k[1]) // s[1] + 1,
            (w + 2 * p[2] - k[2]) // s[2] + 1,
        )
        if min(out) >= 1:
            return (c,) + out
        for axis, before, after in zip(_AXES, shape[1:], out):
            if after < 1:
                dims = "x".join(map(str, shape[1:]))
                raise self.error(
                    key,
                    f"{where} shrinks the {axis} below 1 ({before} -> {after}) on a {dims} feature map",
                    hint="use a larger input clip, or fewer or smaller strides",
                )
        return (c,) + out

    def run(self) -> LoweredNetwork:
        net = self.net
        shape = tuple(net.input)
        stem_ops: list = []
        counts = {"conv": 0, "maxpool": 0}
        for i, layer in enumerate(net.stem):
            # a stem layer that shrinks a size below 1 is blamed on its padding (where one was
            # written), else its kernel
            key = (f"stem.{i}.padding", f"stem.{i}.kernel", f"stem.{i}")
            counts[layer.kind] += 1
            n = counts[layer.kind]
            if layer.kind == "conv":
                out = self.shape_after(
                    shape, layer.kernel, layer.stride, layer.padding, "the stem conv", key
                )
                out = (layer.out,) + out[1:]
                if shape[0] % layer.groups or layer.out % layer.groups:
                    raise self.error(
                        (f"stem.{i}.groups", f"stem.{i}"),
                        f"groups={layer.groups} does not divide the {shape[0]} input and "
                        f"{layer.out} output channels of the stem conv",
                        hint=f"a channel-wise conv has groups=out={shape[0]}",
                    )
                stem_ops.append(
                    Conv3d(
                        f"stem.conv{n}",
                        shape,
                        out,
                        shape[0],
                        layer.out,
                        layer.kernel,
                        layer.stride,
                        layer.padding,
                        layer.groups,
                    )
                )
                if layer.norm:
                    stem_ops.append(
                        BatchNorm(f"stem.bn{n}", out, out, layer.out, self.eps, self.momentum)
                    )
                    stem_ops.append(ReLU(f"stem.relu{n}", out, out))
            else:
                out = self.shape_after(
                    shape, layer.kernel, layer.stride, layer.padding, "the stem maxpool", key
                )
                stem_ops.append(
                    MaxPool(f"stem.pool{n}", shape, out, layer.kernel, layer.stride, layer.padding)
                )
            shape = out
        stem = Sequence("stem", tuple(stem_ops), tuple(net.input), shape)

        stages = []
        for stage_index, stage in enumerate(net.stages):
            blocks = []
            stage_in = shape
            # blocks repeat with the period of the stage's cycled options (kernels, SE)
            period = lcm(len(stage.kernel_a), len(stage.kernel_b), len(stage.se or (0,)))
            for block_index in range(stage.blocks):
                name = f"layer{stage_index + 1}.{block_index}"
                model = block_index - period
                if model >= 1 and blocks[model].in_shape == shape:
                    block = _renamed_block(blocks[model], name)
                else:
                    block = _BlockLowering(
                        self,
                        stage_index=stage_index,
                        stage=stage,
                        prefix=name,
                        shape=shape,
                        stride=stage.stride if block_index == 0 else (1, 1, 1),
                        kernels=stage.kernels(block_index),
                        se=stage.se_ratio(block_index),
                    ).run()
                blocks.append(block)
                shape = block.out_shape
            pool = None
            if stage.pool is not None:
                k = tuple(stage.pool)
                where = f"the pool {'x'.join(map(str, k))} after stage {stage_index + 1}"
                out = self.shape_after(shape, k, k, (0, 0, 0), where, f"stages.{stage_index}.pool")
                pool = MaxPool(f"layer{stage_index + 1}_pool", shape, out, k, k, (0, 0, 0))
                shape = out
            stages.append(
                LoweredStage(
                    f"layer{stage_index + 1}",
                    stage_index,
                    stage.family,
                    tuple(blocks),
                    stage_in,
                    shape,
                    pool,
                )
            )

        head_in = shape
        head_ops: list = []
        convs = 0  # head convs are numbered through: conv1, conv2, ... (as stem convs are)
        for i, conv in enumerate(net.head.convs):
            convs += 1
            shape = self.head_conv(head_ops, conv, convs, shape, f"head.convs.{i}")
        if net.head.window is not None:
            k = net.head.window
            out = (shape[0],) + tuple(shape[i + 1] - k[i] + 1 for i in range(3))
            if min(out[1:]) < 1:
                dims = "x".join(map(str, shape[1:]))
                raise self.error(
                    "head.window",
                    f"the avgpool window {'x'.join(map(str, k))} is larger than the final {dims} feature map",
                    hint="use a smaller window, or `avgpool` alone for a global average",
                )
            head_ops.append(AvgPool("head.window_pool", shape, out, k))
            shape = out
        elif net.head.post_convs:
            # `avgpool` alone before head convs averages globally there: a window over the
            # whole map (what PyTorchVideo's create_x3d_head sizes its window to)
            k = shape[1:]
            shape = (shape[0], 1, 1, 1)
            head_ops.append(AvgPool("head.window_pool", (shape[0], *k), shape, k))
        for i, conv in enumerate(net.head.post_convs):
            convs += 1
            shape = self.head_conv(head_ops, conv, convs, shape, f"head.post_convs.{i}")
        pooled = (shape[0],)
        head_ops.append(GlobalAvgPool("head.pool", shape, pooled))
        if net.head.dropout > 0:
            head_ops.append(Dropout("head.dropout", pooled, pooled, net.head.dropout))
        head_ops.append(Linear("head.fc", pooled, (net.classes,), shape[0], net.classes))
        head = Sequence("head", tuple(head_ops), head_in, (net.classes,))
        return LoweredNetwork(net, net.name, tuple(net.input), stem, tuple(stages), head)

    def head_conv(self, ops: list, conv, n: int, shape, field: str):
        """Append head conv `n` (+ BN unless norm=off) + ReLU; return its output shape."""
        pad = tuple(k // 2 for k in conv.kernel)
        out = self.shape_after(shape, conv.kernel, (1, 1, 1), pad, "the head conv", field)
        out = (conv.out,) + out[1:]
        ops.append(
            Conv3d(f"head.conv{n}", shape, out, shape[0], conv.out, conv.kernel, (1, 1, 1), pad)
        )
        if conv.norm:
            ops.append(BatchNorm(f"head.bn{n}", out, out, conv.out, self.eps, self.momentum))
        ops.append(ReLU(f"head.relu{n}", out, out))
        return out


class _BlockLowering:
    """One residual block: the branch of its family, the shortcut and the merge."""

    def __init__(
        self,
        low: _Lowering,
        *,
        stage_index: int,
        stage,
        prefix: str,
        shape,
        stride,
        kernels,
        se=0,
    ):
        self.low, self.stage_index, self.stage, self.prefix = low, stage_index, stage, prefix
        self.shape = shape
        self.stride = stride
        self.kernel_a, self.kernel_b = kernels
        self.mids: dict[str, int] = {}  # slot -> width between its factorized convs
        self.ops: list = []
        cin = shape[0]
        cout = stage.out_width
        inner = stage.inner_width
        if inner < 1:
            raise low.error(
                (f"stages.{stage_index}.expansion", f"stages.{stage_index}.width"),
                f"expansion={stage.expansion} leaves {prefix} no inner channels "
                f"(int({stage.expansion} * {stage.width}) = 0)",
                hint="use a larger expansion or width",
            )
        self.params = BlockParams(
            cin,
            inner,
            cout,
            stride,
            cin != cout or stride != (1, 1, 1),
            se_width=round_width(inner, se) if se else 0,
        )

    # -- op helpers -------------------------------------------------------------------------

    def conv(
        self,
        slot,
        cin,
        cout,
        kernel,
        stride,
        groups,
        *,
        in_ref,
        out_ref,
        groups_ref=None,
        stride_ref=None,
        factorize=False,
    ):
        """Add conv `conv_<slot>` + BN (+ the (2+1)D split when asked); the caller adds the ReLU.

        Factorized, a `TxHxW` kernel becomes a 1xHxW conv and a Tx1x1 conv (`conv_<slot>_s`,
        `conv_<slot>_t`, in the stage's order) with BN and ReLU between them; the last of the
        two keeps the slot's BN name, so the block's BNs keep their names."""
        if factorize and kernel[0] > 1 and kernel[1:] != (1, 1):
            spatial = {
                "part": "s",
                "kernel": (1,) + tuple(kernel[1:]),
                "stride": (1, stride[1], stride[2]),
                "stride_ref": "stride_hw" if stride_ref else None,
            }
            temporal = {
                "part": "t",
                "kernel": (kernel[0], 1, 1),
                "stride": (stride[0], 1, 1),
                "stride_ref": "stride_t" if stride_ref else None,
            }
            first, second = (
                (temporal, spatial) if self.stage.factorize == "1+2d" else (spatial, temporal)
            )
            mid, mid_ref = self.mid_width(slot, cin, cout, kernel, first["kernel"], out_ref)
            self._conv_bn(
                f"{slot}_{first['part']}",
                cin=cin,
                cout=mid,
                kernel=first["kernel"],
                stride=first["stride"],
                groups=groups,
                in_ref=in_ref,
                out_ref=mid_ref,
                groups_ref=groups_ref,
                stride_ref=first["stride_ref"],
                bn=f"{slot}_{first['part']}",
            )
            self.relu(f"{slot}_{first['part']}")
            self._conv_bn(
                f"{slot}_{second['part']}",
                cin=mid,
                cout=cout,
                kernel=second["kernel"],
                stride=second["stride"],
                groups=groups,
                in_ref=mid_ref,
                out_ref=out_ref,
                groups_ref=groups_ref,
                stride_ref=second["stride_ref"],
                bn=slot,
            )
        else:
            self._conv_bn(
                slot,
                cin=cin,
                cout=cout,
                kernel=kernel,
                stride=stride,
                groups=groups,
                in_ref=in_ref,
                out_ref=out_ref,
                groups_ref=groups_ref,
                stride_ref=stride_ref,
                bn=slot,
            )

    def _conv_bn(
        self,
        slot,
        *,
        cin,
        cout,
        kernel,
        stride,
        groups,
        in_ref,
        out_ref,
        groups_ref,
        stride_ref,
        bn,
    ):
        """Add conv `conv_<slot>` and its BN `bn_<bn>`, with 'same' padding."""
        self.check_groups(slot, cin, cout, groups, groups_ref)
        pad = tuple(k // 2 for k in kernel)
        where = f"the stride {'x'.join(map(str, stride))} of {self.prefix}.conv_{slot}"
        out = self.low.shape_after(
            self.shape, kernel, stride, pad, where, f"stages.{self.stage_index}.stride"
        )
        out = (cout,) + out[1:]
        self.ops.append(
            Conv3d(
                f"{self.prefix}.conv_{slot}",
                self.shape,
                out,
                cin,
                cout,
                kernel,
                stride,
                pad,
                groups,
                in_ref=in_ref,
                out_ref=out_ref,
                groups_ref=groups_ref,
                stride_ref=stride_ref,
            )
        )
        self.ops.append(
            BatchNorm(
                f"{self.prefix}.bn_{bn}",
                out,
                out,
                cout,
                self.low.eps,
                self.low.momentum,
                channels_ref=out_ref,
            )
        )
        self.shape = out

    def mid_width(self, slot, cin, cout, kernel, first_kernel, out_ref):
        """The width between a factorized pair, and the block parameter it reads.

        `matched` gives the pair the parameter count of the 3D conv it replaces (R(2+1)D's
        M_i, VMZ's Conv2Plus1D): cin*cout*T*H*W // (cin*first + second*cout), with `first`
        the first conv's kernel volume; `matched-block` matches every pair of a block with the
        block's input width and its width, as torchvision's BasicBlock and Bottleneck do."""
        mode = self.stage.mid or "out"
        if mode == "out":
            return cout, out_ref
        if mode == "matched-block":
            cin, cout = self.params.in_channels, self.params.width
        first = prod(first_kernel)
        mid = cin * cout * prod(kernel) // (cin * first + prod(kernel) // first * cout)
        if mid < 1:
            raise self.low.error(
                f"stages.{self.stage_index}.mid",
                f"mid={mode} leaves no channels between the factorized convs of "
                f"{self.prefix}.conv_{slot}",
                hint="use mid=out",
            )
        self.mids[slot] = mid
        return mid, f"mid_{slot}"

    def squeeze_excite(self):
        """SE on conv_b's output: mean -> 1x1x1 conv (bias) -> ReLU -> 1x1x1 conv (bias) ->
        sigmoid, scaling the input channel by channel (fvcore's SqueezeExcitation)."""
        c, r, name = self.shape[0], self.params.se_width, f"{self.prefix}.se"
        pooled, reduced = (c, 1, 1, 1), (r, 1, 1, 1)
        ones, zeros = (1, 1, 1), (0, 0, 0)
        ops = (
            Conv3d(f"{name}.reduce", pooled, reduced, c, r, ones, ones, zeros, bias=True),
            ReLU(f"{name}.relu", reduced, reduced),
            Conv3d(f"{name}.expand", reduced, pooled, r, c, ones, ones, zeros, bias=True),
            Sigmoid(f"{name}.gate", pooled, pooled),
        )
        self.ops.append(SqueezeExcite(name, self.shape, self.shape, c, r, ops, "width", "se_width"))

    def relu(self, slot):
        self.ops.append(ReLU(f"{self.prefix}.relu_{slot}", self.shape, self.shape))

    def check_groups(self, slot, cin, cout, groups, groups_ref):
        if groups_ref is not None:  # depthwise
            if cin != cout:
                raise self.low.error(
                    f"stages.{self.stage_index}.project",
                    f"a depthwise conv cannot change width ({cin} -> {cout}) in {self.prefix}.conv_{slot}",
                    hint="turn on simple-D's 1x1x1 projection (`project=on`) or keep the width",
                )
            return
        if cin % groups or cout % groups:
            bad = cin if cin % groups else cout
            side = "input" if cin % groups else "output"
            common = gcd(cin, cout)
            divisors = [d for d in (1, 2, 4, 8, 16, 32, 64) if common % d == 0]
            raise self.low.error(
                f"stages.{self.stage_index}.groups",
                f"g={groups} does not divide the {bad} {side} channels of {self.prefix}.conv_{slot}",
                hint="g must divide every width it groups, e.g. g=" + "|".join(map(str, divisors)),
            )

    # -- families --------------------------------------------------------------------------

    def run(self) -> Block:
        stage, params = self.stage, self.params
        block_in = self.shape
        if stage.family.has_conv_b:
            self.bottleneck()
        else:
            self.simple()
        self.ops[-1] = _last(self.ops[-1])
        if self.mids:
            self.params = replace(self.params, mid_a=self.mids.get("a"), mid_b=self.mids.get("b"))
        residual = tuple(self.ops)
        branch_out = self.shape
        shortcut: tuple = ()
        if params.shortcut:
            self.ops, self.shape = [], block_in
            self._conv_bn(
                "shortcut",
                cin=params.in_channels,
                cout=params.out_channels,
                kernel=(1, 1, 1),
                stride=params.stride,
                groups=1,
                in_ref="in_channels",
                out_ref="out_channels",
                groups_ref=None,
                stride_ref="stride",
                bn="shortcut",
            )
            shortcut = tuple(self.ops)
            # names: conv_shortcut reads oddly; the projection is `shortcut_conv` / `shortcut_bn`
            shortcut = (
                _renamed(shortcut[0], f"{self.prefix}.shortcut_conv"),
                _renamed(shortcut[1], f"{self.prefix}.shortcut_bn"),
            )
            if stage.family is Family.X3D and params.in_channels == params.out_channels:
                # PyTorchVideo's create_x3d_res_block norms the projection only where the
                # width changes: a strided projection to the same width is the conv alone
                shortcut = shortcut[:1]
        merge = (
            Add(f"{self.prefix}.add", branch_out, branch_out),
            ReLU(f"{self.prefix}.relu", branch_out, branch_out),
        )
        return Block(
            self.prefix, stage.family, self.params, block_in, branch_out, residual, shortcut, merge
        )

    def bottleneck(self):
        stage, params, family = self.stage, self.params, self.stage.family
        outer_groups = stage.groups if family is Family.BOTTLENECK_DG else 1
        first = params.stride if stage.stride_at == "first" else (1, 1, 1)
        middle = params.stride if stage.stride_at != "first" else (1, 1, 1)
        first_ref = "stride" if stage.stride_at == "first" else None
        middle_ref = "stride" if stage.stride_at != "first" else None
        factorized = stage.factorize != "3d"
        self.conv(
            "a",
            params.in_channels,
            params.width,
            self.kernel_a,
            first,
            outer_groups,
            in_ref="in_channels",
            out_ref="width",
            stride_ref=first_ref,
            factorize=factorized,
        )
        self.relu("a")
        if family is Family.BOTTLENECK_IP:
            self.conv(
                "ip",
                params.width,
                params.width,
                (1, 1, 1),
                (1, 1, 1),
                1,
                in_ref="width",
                out_ref="width",
            )
            if stage.ip_relu:
                self.relu("ip")
        if family in _DEPTHWISE:
            groups, groups_ref = params.width, "width"
        else:
            groups, groups_ref = (stage.groups if family is Family.BOTTLENECK_G else 1), None
        self.conv(
            "b",
            params.width,
            params.width,
            self.kernel_b,
            middle,
            groups,
            in_ref="width",
            out_ref="width",
            groups_ref=groups_ref,
            stride_ref=middle_ref,
            factorize=factorized,
        )
        if params.se_width:
            self.squeeze_excite()
        if stage.act_b == "swish":
            self.ops.append(Swish(f"{self.prefix}.swish_b", self.shape, self.shape))
        else:
            self.relu("b")
        self.conv(
            "c",
            params.width,
            params.out_channels,
            (1, 1, 1),
            (1, 1, 1),
            outer_groups,
            in_ref="width",
            out_ref="out_channels",
        )

    def simple(self):
        stage, params, family = self.stage, self.params, self.stage.family
        factorized = stage.factorize != "3d"
        cin, in_ref = params.in_channels, "in_channels"
        if (
            family is Family.SIMPLE_D
            and stage.project
            and params.in_channels != params.out_channels
        ):
            self.conv(
                "p",
                params.in_channels,
                params.out_channels,
                (1, 1, 1),
                (1, 1, 1),
                1,
                in_ref="in_channels",
                out_ref="out_channels",
            )
            self.relu("p")
            cin, in_ref = params.out_channels, "out_channels"
        if family is Family.SIMPLE_D:
            groups, groups_ref = params.out_channels, "out_channels"
            if cin != params.out_channels:
                groups = cin  # reported as a depthwise width change by check_groups
        else:
            groups, groups_ref = (stage.groups if family is Family.SIMPLE_G else 1), None
        self.conv(
            "a",
            cin,
            params.out_channels,
            self.kernel_a,
            params.stride,
            groups,
            in_ref=in_ref,
            out_ref="out_channels",
            groups_ref=groups_ref,
            stride_ref="stride",
            factorize=factorized,
        )
        self.relu("a")
        groups_b = params.out_channels if family is Family.SIMPLE_D else groups
        self.conv(
            "b",
            params.out_channels,
            params.out_channels,
            self.kernel_b,
            (1, 1, 1),
            groups_b,
            in_ref="out_channels",
            out_ref="out_channels",
            groups_ref=groups_ref,
            factorize=factorized,
        )


def _last(bn: BatchNorm) -> BatchNorm:
    return bn._replace(last=True)


def _renamed_block(block: Block, name: str) -> Block:
    """A copy of a block under another name ("layer2.1" -> "layer2.5"), its ops renamed."""
    cut = len(block.name)

    def renamed(ops):
        return tuple([_renamed_op(op, name, cut) for op in ops])

    return Block(
        name,
        block.family,
        block.params,
        block.in_shape,
        block.out_shape,
        residual=renamed(block.residual),
        shortcut=renamed(block.shortcut),
        merge=renamed(block.merge),
        repeats=block.name,
    )


def _renamed_op(op, name: str, cut: int):
    op = op._make((name + op.name[cut:], *op[1:]))
    if isinstance(op, SqueezeExcite):
        op = op._replace(ops=tuple(_renamed_op(o, name, cut) for o in op.ops))
    return op


def _renamed(op, name):
    return op._replace(name=name)
