"""Sound upper bounds on the l2 operator norm of bias-free Dense and Conv2D maps.

A certificate may use a norm that is too large, never one that is too small. Every
bound here is computed in float64 and then passed through ``with_margin``, which
multiplies by ``1 + RELATIVE_MARGIN`` and rounds up to a float32, so the returned
Python float is a float32 value that is >= the float64 result.
"""
import math
from numbers import Integral

import numpy as np

# Float32 weights convert to float64 exactly; the float64 FFT, Gram product and eigvalsh
# then give the top singular value to a relative error of about n * 2**-53 (~1e-13 for
# n in the thousands). The margin covers that many times over, and the float32 cast
# (relative step 2**-24 ~ 6e-8) rounds up on top of it, so no float error can push a
# returned bound below the true norm.
RELATIVE_MARGIN = 1e-5


def with_margin(value):
    """``value * (1 + RELATIVE_MARGIN)`` rounded up to the next float32, as a Python float.

    Args:
        value: a finite non-negative float64 norm.

    Returns:
        The smallest float32 >= value * (1 + RELATIVE_MARGIN) (exactly 0.0 for 0).
    """
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"with_margin expects a finite non-negative value. Received: {value}")
    scaled = float(value) * (1.0 + RELATIVE_MARGIN)
    rounded = np.float32(scaled)
    if float(rounded) < scaled:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return float(rounded)


def dense_norm_bound(kernel):
    """Upper bound on ||K||_2 for the Dense map y = x K (Keras kernel K of shape (in, out)).

    The exact top singular value sqrt(lambda_max(G)) with G the smaller Gram matrix
    (K^T K or K K^T, by ``np.linalg.eigvalsh`` in float64), then ``with_margin``.

    Args:
        kernel: array of shape (in, out).

    Returns:
        A float32-representable Python float >= ||K||_2.
    """
    kernel = _as_finite_float64(kernel, 2, "dense_norm_bound", "(in, out)")
    return with_margin(_top_singular_values(kernel[None])[0])


def conv2d_norm_bound(kernel, input_shape, strides, padding):
    """Upper bound on the norm of x -> tf.nn.conv2d(x, K, strides, padding.upper()).

    The bound is the smaller of two sound bounds, then ``with_margin``:

    * polyphase circular: with the padded input xp and p = s u + a (0 <= a < s), the
      output y[i] = sum_p K[p]^T xp[s i + p] = sum_u sum_a K[s u + a]^T X_a[i + u] with
      X_a[m] = xp[s m + a] is a stride-1 correlation of the s_h x s_w space-to-depth
      input (c_in s_h s_w channels (a, b, c)) with the kernel
      K'[u, v, (a, b, c), o] = K[s_h u + a, s_w v + b, c, o] of size ceil(k / s)
      (zero-padded). Its norm is at most
      max_w sigma_max(sum_{u,v} K'[u, v]^T exp(-2 pi i (u w_1 / N_h + v w_2 / N_w)))
      over the N_h N_w DFT frequencies of a large enough torus (``_circular_bound``).
      For stride 1 this is the plain circular bound; for larger strides it avoids the
      up-to-s looseness of bounding the stride-1 map and keeping every s-th output;
    * windows: ||y||^2 = sum_i ||M^T x_window(i)||^2 <= ||M||_2^2 m_h m_w ||x||^2 with
      M the kernel reshaped to (kh kw c_in, c_out) and m = min(ceil(k / s), out) the
      most windows that cover one input pixel along an axis (tight for small outputs).

    Args:
        kernel: array of shape (kh, kw, c_in, c_out).
        input_shape: (H, W, c_in), the per-sample input shape.
        strides: a positive int or a pair of positive ints.
        padding: 'same' or 'valid' (TensorFlow semantics, case-insensitive).

    Returns:
        A float32-representable Python float >= the operator norm.
    """
    kernel = _as_finite_float64(kernel, 4, "conv2d_norm_bound", "(kh, kw, c_in, c_out)")
    input_shape = _check_input_shape(input_shape, kernel.shape)
    strides = _pair(strides)
    if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid'. Received: padding={padding!r}")
    same = padding.lower() == "same"
    if not same and any(n < k for n, k in zip(input_shape, kernel.shape)):
        raise ValueError("'valid' padding needs an input at least as large as the kernel. "
                         f"Received: input_shape={input_shape}, kernel shape {kernel.shape}")
    axes = [_axis(n, k, s, same) for n, k, s in zip(input_shape, kernel.shape, strides)]
    merged, support = _polyphase(kernel, axes, strides)
    circular = min(_circular_bound(merged, support),
                   _circular_bound(merged, [out for _, out, _ in axes]))
    covers = [min(-(-k // s), out) for k, s, (_, out, _) in zip(kernel.shape, strides, axes)]
    matrix = kernel.reshape(-1, kernel.shape[-1])
    windows = math.sqrt(covers[0] * covers[1]) * _top_singular_values(matrix[None])[0]
    return with_margin(min(circular, windows))


def _axis(size, k, stride, same):
    """(input size, output size, zeros padded before the input) along one axis, as
    TensorFlow pads: SAME pads max((out - 1) s + k - n, 0) zeros, the smaller half before."""
    if not same:
        return size, (size - k) // stride + 1, 0
    out = -(-size // stride)
    return size, out, max((out - 1) * stride + k - size, 0) // 2


def _polyphase(kernel, axes, strides):
    """Kernel K' and input support (rows, cols) of the stride-1 correlation on the
    s_h x s_w space-to-depth grid that computes the stride-s map (docstring above).

    The input occupies xp[before .. before + n - 1], i.e. grid rows before // s ..
    (before + n - 1) // s; the position of the support does not change the norm.
    """
    kh, kw, c_in, c_out = kernel.shape
    (s_h, s_w), taps = strides, (-(-kh // strides[0]), -(-kw // strides[1]))
    padded = np.zeros((taps[0] * s_h, taps[1] * s_w, c_in, c_out))
    padded[:kh, :kw] = kernel
    stacked = padded.reshape(taps[0], s_h, taps[1], s_w, c_in, c_out)
    merged = stacked.transpose(0, 2, 1, 3, 4, 5).reshape(taps[0], taps[1], -1, c_out)
    support = [(before % s + n - 1) // s + 1 for (n, _, before), s in zip(axes, strides)]
    return merged, support


def _circular_bound(kernel, support):
    """max over DFT frequencies of sigma_max(K_hat(w)) on an N_h x N_w torus with
    N = support + k - 1 along each axis, where ``support`` is either the number of grid
    cells the input occupies or the number of outputs (both give sound bounds; the
    caller takes the smaller).

    Soundness with the input support: the full correlation z[a] = sum_p K[p]^T x[a + p] (a in -(k-1) .. n-1
    covers every non-zero output) equals the circular one on a torus of N >= n + k - 1
    cells holding x at 0 .. n-1 and zeros elsewhere: for such a, a + p lies in
    -(k-1) .. n+k-2, whose cells below 0 wrap to N-k+1 .. N-1 >= n (zeros, as in the
    zero-padded input), and whose cells above n-1 stay below N (zeros too), and the
    n + k - 1 outputs a are distinct on the torus. So the map is a restriction of the
    circular correlation, whose norm is the largest singular value of its DFT symbol
    (np.fft.fft2 gives the conjugate symbol, which has the same singular values).
    Soundness with the output count m: output i reads the cells i .. i + k - 1 only, all
    within a window of m + k - 1 cells that never wraps on such a torus; input cells no
    output reads are zero columns of the map and do not change its norm.
    """
    grid = [n + k - 1 for n, k in zip(support, kernel.shape)]
    symbol = np.fft.fft2(kernel, s=grid, axes=(0, 1))
    return _top_singular_values(symbol.reshape(-1, *kernel.shape[2:])).max()


def _top_singular_values(matrices):
    """Largest singular value of each matrix of a batch, via the smaller Gram matrix."""
    if matrices.shape[1] < matrices.shape[2]:
        gram = matrices @ np.conj(np.swapaxes(matrices, 1, 2))
    else:
        gram = np.conj(np.swapaxes(matrices, 1, 2)) @ matrices
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[:, -1], 0.0))


def _pair(strides):
    """(s_h, s_w) from an int or a pair of positive ints."""
    pair = (strides, strides) if np.ndim(strides) == 0 else tuple(strides)
    if len(pair) != 2 or not all(map(_is_positive_int, pair)):
        raise ValueError("strides must be a positive int or a pair of positive ints. "
                         f"Received: strides={strides!r}")
    return tuple(int(s) for s in pair)


def _check_input_shape(input_shape, kernel_shape):
    """(H, W) after checking input_shape = (H, W, c_in) against the kernel."""
    shape = tuple(input_shape) if np.ndim(input_shape) == 1 else ()
    if len(shape) != 3 or not all(map(_is_positive_int, shape)):
        raise ValueError("input_shape must be (H, W, c_in) with positive ints. "
                         f"Received: input_shape={input_shape!r}")
    if shape[2] != kernel_shape[2]:
        raise ValueError(f"input_shape has {shape[2]} channels but the kernel expects "
                         f"{kernel_shape[2]}. Received: input_shape={input_shape!r}, "
                         f"kernel shape {kernel_shape}")
    return tuple(int(d) for d in shape[:2])


def _is_positive_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool) and value > 0


def _as_finite_float64(kernel, rank, name, layout):
    """The kernel as a float64 array, after checking its rank and values."""
    array = np.asarray(kernel, dtype=np.float64)
    if array.ndim != rank:
        raise ValueError(f"{name} expects a kernel of rank {rank} {layout}. "
                         f"Received: kernel of shape {array.shape}")
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} expects a non-empty finite kernel. "
                         f"Received: kernel of shape {array.shape} with non-finite "
                         "or no values")
    return array
