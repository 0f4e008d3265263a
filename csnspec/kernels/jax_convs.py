import jax
from flax import nnx

# csnspec: inline-begin


class PointwiseConv(nnx.Conv):
    """A 1x1x1 `nnx.Conv` (unpadded): subsamples its input, then multiplies by the kernel.

    A 1x1x1 conv is a matmul over channels. XLA:CPU computes the gradients of the matmul about
    2x faster than those of the conv, and of a strided conv about 10x slower than those of the
    same conv on the subsampled input (a strided 1x1x1 conv reads every stride-th voxel only).
    Parameters and their paths are nnx.Conv's; groups or a dtype override run nnx.Conv's call.
    """

    def __init__(self, in_features: int, out_features: int, *, strides=1, **kwargs):
        super().__init__(in_features, out_features, kernel_size=(1, 1, 1), **kwargs)
        self.subsample = (strides,) * 3 if isinstance(strides, int) else tuple(strides)

    def __call__(self, x):
        st, sh, sw = self.subsample
        x = x[:, ::st, ::sh, ::sw]
        if self.feature_group_count != 1 or self.dtype is not None:
            return super().__call__(x)
        kernel = self.kernel[...]
        # as a 2D matmul: the gradient of a 5D one has XLA:CPU write the output gradient
        # transposed for the kernel gradient, 3x slower
        out = (x.reshape(-1, x.shape[-1]) @ kernel.reshape(kernel.shape[-2:])).reshape(
            *x.shape[:-1], kernel.shape[-1]
        )
        return out if self.bias is None else out + self.bias[...]


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
        few_channels = self.feature_group_count == 1 and c < 16
        if few_channels:
            # a stem's few channels: the time taps side by side as channels of one 2D conv, which
            # XLA:CPU runs 1.4-1.7x faster forward and kernel gradient (slower at 64 channels)
            stacked = jax.numpy.concatenate(seen, axis=-1).reshape(n * frames, h, w, kt * c)
            taps = jax.numpy.moveaxis(kernel, 0, 2).reshape(*kernel.shape[1:3], kt * c, -1)
            seen, kernel = [stacked], taps[None]
        padding = tuple(tuple(int(p) for p in pad) for pad in space_pad)
        # XLA:CPU's own kernel gradient is the faster one below 64 output channels
        rows_gradient = few_channels and kernel.shape[-1] >= 64 and jax.default_backend() == "cpu"
        out = None
        for tap, frame in enumerate(seen):
            frame = frame.reshape(-1, h, w, frame.shape[-1])
            if rows_gradient:
                y = _few_channel_conv(frame, kernel[tap], (sh, sw), padding)
            else:
                y = _conv2d(frame, kernel[tap], (sh, sw), padding, self.feature_group_count)
            out = y if out is None else out + y
        out = out.reshape(n, frames, *out.shape[1:])
        return out if self.bias is None else out + self.bias[...]


def _conv2d(x, kernel, strides, padding, groups=1):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _few_channel_conv_fwd(x, kernel, strides, padding):
    return _conv2d(x, kernel, strides, padding), (x, kernel)


def _few_channel_conv_bwd(strides, padding, residuals, grad):
    """XLA's input gradient; the kernel gradient as one matrix product per kernel row.

    XLA:CPU's own kernel gradient of a conv with few input channels and 64 output channels (a
    stem's 7x7, stride 2) runs 1.0x (56x56 output), 2.5-3x (112x112) and 6x (224x224) slower
    than these products, whose rows are the kernel row's taps side by side; with 16-32 output
    channels 2-4x faster.
    """
    x, kernel = residuals
    kh, kw, c, o = kernel.shape
    grad_x = jax.vjp(lambda x: _conv2d(x, kernel, strides, padding), x)[1](grad)[0]
    n, oh, ow, _ = grad.shape
    sh, sw = strides
    padded = jax.numpy.pad(x, ((0, 0), *padding, (0, 0)))
    flat_grad = grad.reshape(-1, o)
    rows = []
    for i in range(kh):
        taps = [
            jax.lax.slice(
                padded, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c),
                (1, sh, sw, 1),
            )
            for j in range(kw)
        ]  # fmt: skip
        seen = jax.numpy.concatenate(taps, axis=-1).reshape(-1, kw * c)
        rows.append((seen.T @ flat_grad).reshape(kw, c, o))
    return grad_x, jax.numpy.stack(rows).astype(kernel.dtype)


_few_channel_conv = jax.custom_vjp(
    lambda x, kernel, strides, padding: _conv2d(x, kernel, strides, padding),
    nondiff_argnums=(2, 3),
)
_few_channel_conv.defvjp(_few_channel_conv_fwd, _few_channel_conv_bwd)


def _window_taps(window_shape):
    """The offsets of a window's taps, in PyTorch's scan order (time, then height, then width)."""
    kt, kh, kw = window_shape
    return [(a, b, d) for a in range(kt) for b in range(kh) for d in range(kw)]


def _pooled_shape(shape, window_shape, strides, padding):
    """The (N, T, H, W, C) shape a pool of an input of `shape` gives."""
    spatial = [
        (n + lo + hi - k) // st + 1
        for n, k, st, (lo, hi) in zip(shape[1:4], window_shape, strides, padding)
    ]
    return (shape[0], *spatial, shape[4])


def _max_pool_fwd(x, window_shape, strides, padding):
    """The max over the window's taps, and the tap of each window's first maximum.

    Both come from one running comparison of the same values: XLA may compute x in more than
    one fusion, with different last bits, so a maximum compared afterwards with x can miss.
    """
    out_shape = _pooled_shape(x.shape, window_shape, strides, padding)
    padded = jax.lax.pad(
        x,
        jax.numpy.array(-jax.numpy.inf, x.dtype),
        [(lo, hi, 0) for lo, hi in ((0, 0), *padding, (0, 0))],
    )
    step = (1, *strides, 1)
    best = first = None
    for n, tap in enumerate(_window_taps(window_shape)):
        start = (0, *tap, 0)
        limit = tuple(s + (o - 1) * st + 1 for s, o, st in zip(start, out_shape, step))
        values = jax.lax.slice(padded, start, limit, step)
        if best is None:
            best, first = values, jax.numpy.zeros(out_shape, jax.numpy.int32)
            continue
        better = values > best  # strictly: the first maximum keeps a tie, as in PyTorch
        best = jax.numpy.where(better, values, best)
        first = jax.numpy.where(better, n, first)
    return best, (first, x.shape)


def _max_pool_forward(x, window_shape, strides, padding):
    return _max_pool_fwd(x, window_shape, strides, padding)[0]


def _max_pool_bwd(window_shape, strides, padding, residuals, grad):
    first, shape = residuals
    padded_shape = tuple(n + lo + hi for n, (lo, hi) in zip(shape, ((0, 0), *padding, (0, 0))))
    zero = jax.numpy.zeros((), grad.dtype)
    total = jax.numpy.zeros(padded_shape, grad.dtype)
    step = (1, *strides, 1)
    for n, tap in enumerate(_window_taps(window_shape)):
        start = (0, *tap, 0)
        # this tap's share, put back where the tap read it (lax.pad's interior padding)
        spread = [
            (s, p - s - (o - 1) * st - 1, st - 1)
            for s, p, o, st in zip(start, padded_shape, first.shape, step)
        ]
        total = total + jax.lax.pad(jax.numpy.where(first == n, grad, zero), zero, spread)
    low = (0, *(lo for lo, _ in padding), 0)
    return (jax.lax.slice(total, low, tuple(lo + n for lo, n in zip(low, shape))),)


_max_pool = jax.custom_vjp(_max_pool_forward, nondiff_argnums=(1, 2, 3))
_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window_shape, strides, padding):
    """A 3D max-pool of NDHWC `x`, padded with -inf by explicit (low, high) pairs: `nnx.max_pool`.

    Its gradient is written by hand: the first maximum of each window (in the window's order)
    takes the window's gradient, as in PyTorch. XLA:CPU's own (select-and-scatter) is 5x slower.
    """
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _max_pool(x, tuple(window_shape), tuple(strides), padding)


def _batch_stats(x):
    """x in float32 (or wider), its mean over all but the last axis, x centred, the variance."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jax.numpy.promote_types(x.dtype, jax.numpy.float32))
    mean = x.mean(axes)
    centred = x - mean
    return mean, centred, jax.numpy.mean(centred * centred, axes)


def _batch_norm_forward(x, scale, bias, epsilon):
    mean, centred, var = _batch_stats(x)
    y = centred * (jax.lax.rsqrt(var + epsilon) * scale) + bias
    return y.astype(x.dtype), mean, var


def _batch_norm_fwd(x, scale, bias, epsilon):
    mean, centred, var = _batch_stats(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    y = centred * (rstd * scale) + bias
    return (y.astype(x.dtype), mean, var), (x, mean, rstd, scale)


def _batch_norm_bwd(epsilon, residuals, cotangents):
    x, mean, rstd, scale = residuals
    grad, grad_mean, grad_var = cotangents
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    normed = (x.astype(rstd.dtype) - mean) * rstd
    grad = grad.astype(rstd.dtype)
    grad_bias = grad.sum(axes)
    grad_scale = (grad * normed).sum(axes)
    grad_x = (scale * rstd) * (grad - (grad_bias + normed * grad_scale) / count)
    # the batch statistics' own cotangents (zero when only the running averages read them)
    grad_x = grad_x + (grad_mean + 2 * grad_var * normed / rstd) / count
    return grad_x.astype(x.dtype), grad_scale.astype(scale.dtype), grad_bias.astype(scale.dtype)


_batch_norm = jax.custom_vjp(_batch_norm_forward, nondiff_argnums=(3,))
_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` whose training-mode call has its gradient written by hand.

    Two-pass statistics in float32, as nnx.BatchNorm(use_fast_variance=False) computes them; the
    gradient in closed form (two reductions), which XLA:CPU runs 1.3-1.5x faster than the
    autodiff of the statistics. Parameters, batch statistics and their paths are nnx's; the
    eval-mode call, masks, a dtype override or cross-device statistics run nnx's own call.
    """

    def __call__(self, x, use_running_average=None, *, mask=None):
        running = self.use_running_average if use_running_average is None else use_running_average
        if (
            running
            or mask is not None
            or self.dtype is not None
            or self.axis_name is not None
            or self.scale is None
            or self.bias is None
            or self.axis not in (-1, x.ndim - 1)
        ):
            return super().__call__(x, use_running_average, mask=mask)
        y, mean, var = _batch_norm(x, self.scale[...], self.bias[...], self.epsilon)
        keep = self.momentum
        self.mean[...] = jax.lax.stop_gradient(keep * self.mean[...] + (1 - keep) * mean)
        self.var[...] = jax.lax.stop_gradient(keep * self.var[...] + (1 - keep) * var)
        return y
