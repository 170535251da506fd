"""2-D convolution with the linear seam."""
import keras
import numpy as np
import tensorflow as tf

from gloro_local.layers.operator_norms import conv2d_norm_bound
from gloro_local.layers.seam import LinearSeam, cast_like
from gloro_local.layers.validation import reject_unsupported, require_channels_last


class Conv2DSeam(LinearSeam):
    """Linear seam of the channels-last convolution y = K * x + b.

    linear(u) = conv2d(u, K), linear_transpose(v) = conv2d_transpose(v, K) with the input's
    shape (the exact adjoint for every stride and padding; for stride 1 with
    kh * kw * c_in <= c_out, e.g. a first layer on 1-channel images, the same adjoint as
    one matmul and a sum of shifted windows, ``_transpose_by_windows``),
    abs_linear(r) = conv2d(r, |K|),
    row_norms()_c = ||K[:, :, :, c]||_2, the full filter norm of output channel c (an
    upper bound on the norm of every output neuron's row, also at the borders),
    norm_upper_bound(input_shape) = a sound bound of ||A||_2 from the circular embedding of
    the zero-padded convolution (see ``operator_norms.conv2d_norm_bound``).
    """

    def _conv(self, x, kernel):
        return tf.nn.conv2d(x, kernel, strides=list(self.strides),
                            padding=self.padding.upper())

    def linear(self, u):
        return self._conv(u, cast_like(self.kernel, u))

    def linear_transpose(self, v, input_shape):
        kh, kw, c_in, c_out = self.kernel.shape
        if tuple(self.strides) == (1, 1) and kh * kw * c_in <= c_out:
            return self._transpose_by_windows(v, input_shape)
        output_shape = tf.concat([tf.shape(v)[:1], list(input_shape)], axis=0)
        return tf.nn.conv2d_transpose(v, cast_like(self.kernel, v), output_shape,
                                      strides=list(self.strides),
                                      padding=self.padding.upper())

    def _transpose_by_windows(self, v, input_shape):
        """A^T v for stride 1: z = v K^T gives, at every output position o, the
        kh x kw x c_in patch that o spreads back (one matmul), and input q collects
        z[o, i, j] from o = q - (i, j) + pad: the sum of kh * kw shifted windows of z,
        padded so that positions outside the output add 0. oneDNN's conv2d_transpose
        to a few channels is about 2x slower here."""
        kh, kw, c_in, c_out = self.kernel.shape
        height, width = input_shape[0], input_shape[1]
        out_h, out_w = v.shape[1], v.shape[2]
        kernel = tf.reshape(cast_like(self.kernel, v), [kh * kw * c_in, c_out])
        z = tf.matmul(tf.reshape(v, [-1, c_out]), kernel, transpose_b=True)
        z = tf.reshape(z, [-1, out_h, out_w, kh, kw, c_in])
        same = self.padding == "same"
        top, left = ((kh - 1) // 2, (kw - 1) // 2) if same else (0, 0)
        before_h, before_w = kh - 1 - top, kw - 1 - left
        z = tf.pad(z, [[0, 0], [before_h, height + kh - 1 - out_h - before_h],
                       [before_w, width + kw - 1 - out_w - before_w], [0, 0], [0, 0], [0, 0]])
        return tf.add_n([z[:, kh - 1 - i:kh - 1 - i + height, kw - 1 - j:kw - 1 - j + width,
                           i, j, :] for i in range(kh) for j in range(kw)])

    def abs_linear(self, r):
        return self._conv(r, tf.abs(cast_like(self.kernel, r)))

    def row_norms(self):
        """In float64, so that tiny weights cannot underflow their squares to 0."""
        kernel = tf.cast(self.kernel, tf.float64)
        return tf.norm(tf.reshape(kernel, [-1, kernel.shape[-1]]), axis=0)

    def add_bias(self, z):
        return z + cast_like(self.bias, z) if self.use_bias else z

    def norm_upper_bound(self, input_shape):
        """A float >= ||A||_2 on inputs of ``input_shape``, computed eagerly."""
        return conv2d_norm_bound(np.asarray(self.kernel.numpy(), np.float64),
                                 tuple(input_shape), self.strides, self.padding)


@keras.saving.register_keras_serializable(package="gloro_local")
class Conv2D(Conv2DSeam, keras.layers.Conv2D):
    """Channels-last 2-D convolution ``y = K * x + b`` that takes part in bound propagation.

    Same arguments as ``keras.layers.Conv2D`` (filters, kernel_size, strides, padding
    'same'/'valid', use_bias, initialisers); activation must stay linear, dilation and
    groups must be 1.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        reject_unsupported(type(self).__name__, kwargs)
        super().__init__(filters, kernel_size, **kwargs)
        require_channels_last(self)
