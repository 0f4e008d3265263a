import jax
from flax import nnx

# csnspec: inline-begin


class PointwiseConv(nnx.Conv):
    """A 1x1x1 `nnx.Conv` (unpadded): subsamples its input, then convolves at stride 1.

    A strided 1x1x1 conv reads every stride-th voxel only. XLA:CPU computes its gradient
    about 10x slower than that of the same conv on the subsampled input, so this takes
    that route. Parameters and their paths are nnx.Conv's.
    """

    def __init__(self, in_features: int, out_features: int, *, strides=1, **kwargs):
        super().__init__(in_features, out_features, kernel_size=(1, 1, 1), **kwargs)
        self.subsample = (strides,) * 3 if isinstance(strides, int) else tuple(strides)

    def __call__(self, x):
        st, sh, sw = self.subsample
        return super().__call__(x[:, ::st, ::sh, ::sw])


class FrameConv(nnx.Conv):
    """A 3D `nnx.Conv` (explicit padding) run as one 2D conv per time tap, frames as a batch.

    XLA:CPU has fast 2D convolutions, but runs 3D ones and their gradients through a generic
    loop, 4-100x slower. With few input channels (a stem), the frames of the time taps go side
    by side as channels of one 2D conv. Parameters and their paths are nnx.Conv's; a padding given as a string,
    dilations or a dtype override run nnx.Conv's own call.
    """

    def __call__(self, x):
        if (
            isinstance(self.padding, str)
            or self.input_dilation not in (1, (1, 1, 1))
            or self.kernel_dilation not in (1, (1, 1, 1))
            or self.dtype is not None
        ):
            return super().__call__(x)
        strides = self.strides
        st, sh, sw = (strides,) * 3 if isinstance(strides, int) else strides
        time_pad, *space_pad = self.padding
        kernel = self.kernel[...]
        x = jax.numpy.pad(x, ((0, 0), tuple(time_pad), (0, 0), (0, 0), (0, 0)))
        n, t, h, w, c = x.shape
        kt = kernel.shape[0]
        frames = (t - kt) // st + 1
        # the input frames each time tap of every output frame reads
        seen = [
            jax.lax.slice_in_dim(x, a, a + (frames - 1) * st + 1, st, axis=1) for a in range(kt)
        ]
        if self.feature_group_count == 1 and c < 16:
            # a stem's few channels: the time taps side by side as channels of one 2D conv, which
            # XLA:CPU runs 1.4-1.7x faster forward and kernel gradient (slower at 64 channels)
            stacked = jax.numpy.concatenate(seen, axis=-1).reshape(n * frames, h, w, kt * c)
            taps = jax.numpy.moveaxis(kernel, 0, 2).reshape(*kernel.shape[1:3], kt * c, -1)
            seen, kernel = [stacked], taps[None]
        out = None
        for tap, frame in enumerate(seen):
            y = jax.lax.conv_general_dilated(
                frame.reshape(-1, h, w, frame.shape[-1]),
                kernel[tap],
                (sh, sw),
                [tuple(p) for p in space_pad],
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.feature_group_count,
            )
            out = y if out is None else out + y
        out = out.reshape(n, frames, *out.shape[1:])
        return out if self.bias is None else out + self.bias[...]
