"""Bounds are pluggable: one interface, a registry, and a new bound is one new class."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from gloro_local.bounds import (SeamNetwork, check_epsilon, compute_margins,
                                sound_global_norms)
from gloro_local.bounds.strategies import (Bound, GlobalBound, bound_names, get_bound,
                                           register)
from gloro_local.layers import Conv2D, Dense, MaxMin, ReLUTheta


@register
class WiderBox(GlobalBound):
    """A test bound: the global bound's walk with every box widened by 10% of its
    half-width (still sound, strictly looser)."""

    name = "test_wider_box"

    def activation_step(self, seam, state):
        state = super().activation_step(seam, state)
        spread = 0.1 * (state.hi - state.lo) / 2.0
        return state._replace(lo=state.lo - spread, hi=state.hi + spread)


def network():
    f = keras.Sequential([keras.Input((6, 6, 2)), Conv2D(4, 3), ReLUTheta(),
                          Conv2D(4, 3, strides=2, padding="same"), MaxMin(),
                          keras.layers.Flatten(), Dense(8), ReLUTheta(), Dense(3)])
    return f, SeamNetwork(f.layers, (6, 6, 2))


@pytest.fixture(scope="module")
def shared():
    """One network for every bound compared."""
    keras.utils.set_random_seed(3)
    return network()


def margins(shared, bound, eps=0.2):
    _, net = shared
    x = tf.constant(np.random.default_rng(0).uniform(size=(16, 6, 6, 2)), tf.float32)
    norms = [tf.constant(s, tf.float32) for s in sound_global_norms(net)]
    starts = [tf.random.normal((16,) + shape) for _, shape in net.hidden_layers()]
    return compute_margins(net, x, check_epsilon(eps), norms, bound, None, starts, 50,
                           capped=True)


def test_registry_lists_the_l2_bounds_and_refuses_unknown_names():
    assert {"local", "global", "gloro"} <= set(bound_names("l2"))
    for name in ("local", "global", "gloro"):
        assert isinstance(get_bound(name), Bound) and get_bound(name).name == name
    with pytest.raises(ValueError, match="bound must be one of .*Received: bound='nope'"):
        get_bound("nope")
    with pytest.raises(ValueError, match="Received: bound='local'"):
        get_bound("local", norm="linf")
    with pytest.raises(ValueError, match="new, non-empty name"):
        register(WiderBox)


def test_a_new_bound_is_one_class(shared):
    """The registered test bound runs through compute_margins and LocalGloroNet unchanged,
    and is looser than the bound it widens, never tighter."""
    base, wider = margins(shared, "global"), margins(shared, "test_wider_box")
    np.testing.assert_array_equal(base.logits, wider.logits)
    assert np.all(wider.bottom.numpy() >= base.bottom.numpy() - 1e-6)
    assert np.any(wider.bottom.numpy() > base.bottom.numpy() + 1e-4)
    model = gl.LocalGloroNet(shared[0], 0.2, bound="test_wider_box")
    assert model(np.zeros((2, 6, 6, 2), np.float32)).shape == (2, 4)


def test_gloro_walk_tracks_no_boxes_and_local_is_never_above_global(shared):
    gloro, global_, local = (margins(shared, b) for b in ("gloro", "global", "local"))
    pen = gloro.propagation.penultimate
    np.testing.assert_array_equal(pen.lo, pen.centre)
    assert all(a.varying is None for a in gloro.propagation.activations)
    assert np.all(local.bottom.numpy() <= global_.bottom.numpy() + 1e-5)
    np.testing.assert_allclose(gloro.logits, global_.logits, rtol=1e-6, atol=1e-6)
