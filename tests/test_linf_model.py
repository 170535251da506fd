"""LinfCertifiedNet: l-infinity certified training with IBP, CROWN-IBP and the optimised
relaxation, behind the same Keras API as LocalGloroNet."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import gloro_local as gl
from conftest import sectors
from gloro_local.bounds import SeamNetwork, bound_names, check_epsilon, compute_margins, walk
from gloro_local.bounds.linf import ibp
from gloro_local.layers import Conv2D, Dense, ReLU
from test_linf_soundness import square_offsets

RELAXATIONS = ("ibp", "crown_ibp", "optimized")


def sectors_model(relaxation, eps=0.04, epochs=30, seed=0):
    """A small ReLU network trained with the mixed loss on the 3-sector data."""
    keras.utils.set_random_seed(seed)
    x, y = sectors(np.random.default_rng(seed), 1500)
    f = keras.Sequential([keras.Input((2,)), Dense(32), ReLU(), Dense(32), ReLU(),
                          Dense(3)])
    model = gl.LinfCertifiedNet(f, eps, relaxation=relaxation)
    model.compile(keras.optimizers.Adam(1e-2), loss="mixed_crossentropy")
    model.fit(x, y, batch_size=100, epochs=epochs, verbose=0, callbacks=[
        gl.training.EpsilonSchedule(eps, epochs // 2),
        gl.training.KappaSchedule(1.0, 0.0, epochs // 2)])
    return model, x, y


@pytest.fixture(scope="module", params=RELAXATIONS)
def trained(request):
    return sectors_model(request.param)


def test_the_linf_bounds_are_registered_next_to_the_l2_ones():
    assert set(RELAXATIONS) <= set(bound_names("linf"))
    assert "crown_ibp_l2" in bound_names("l2")
    f = keras.Sequential([keras.Input((2,)), Dense(4), ReLU(), Dense(3)])
    with pytest.raises(ValueError, match="relaxation must be one of"):
        gl.LinfCertifiedNet(f, 0.1, relaxation="local")
    with pytest.raises(ValueError, match="beta must be a number in \\[0, 1\\]"):
        gl.LinfCertifiedNet(f, 0.1, beta=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        gl.LinfCertifiedNet(f, True)


def test_ibp_walk_equals_the_interval_pass():
    """The 'ibp' strategy's walk gives the boxes of the standalone interval pass."""
    keras.utils.set_random_seed(1)
    f = keras.Sequential([keras.Input((6, 6, 2)), Conv2D(4, 3), ReLU(),
                          keras.layers.Flatten(), Dense(8), ReLU(), Dense(3)])
    network = SeamNetwork(f.layers, (6, 6, 2))
    x = tf.random.uniform((5, 6, 6, 2))
    eps = check_epsilon(0.05)
    walked = walk(network, "ibp", x, eps, [])
    direct = ibp(network, x, eps)
    for box, (lo, hi) in zip(walked.activations, direct.pre_activation):
        np.testing.assert_array_equal(box.lo, lo)
        np.testing.assert_array_equal(box.hi, hi)
    np.testing.assert_array_equal(walked.penultimate.lo, direct.penultimate[0])


def test_training_certifies_and_certified_points_survive_the_grid(trained):
    model, x, y = trained
    eps = float(model.epsilon.numpy())
    certificate = model.certify(x[:300], y[:300], attack_steps=0)
    vra = certificate.certified_accuracy(y[:300])
    assert vra > 0.5, (model.relaxation, vra)
    offsets = square_offsets(eps, grid=41, boundary=160).astype(np.float32)
    for k in np.flatnonzero(certificate.certified)[:40]:
        logits = model.f(x[k] + offsets).numpy()
        assert np.all(np.argmax(logits, -1) == certificate.prediction[k]), k


def test_model_output_is_the_bottom_of_its_relaxation(trained):
    model, x, _ = trained
    outputs = model(x[:50]).numpy()
    logits = model.f(x[:50]).numpy()
    np.testing.assert_allclose(outputs[:, :-1], logits, rtol=1e-5, atol=1e-5)
    certified = np.argmax(outputs, -1) < 3
    certificate = model.certify(x[:50], relaxations=(model.relaxation,), attack_steps=0)
    np.testing.assert_array_equal(certified, certificate.certified)


def test_relaxations_are_tighter_than_ibp_on_average(trained):
    model, x, _ = trained
    eps = check_epsilon(float(model.epsilon.numpy()))
    margins = {r: compute_margins(model.network, x[:200], eps, [], r, None, [], 0,
                                  seed=0).bottom.numpy() for r in RELAXATIONS}
    assert margins["crown_ibp"].mean() < margins["ibp"].mean()
    assert margins["optimized"].mean() < margins["ibp"].mean()


def test_beta_mixes_the_ibp_and_relaxation_margins():
    model, x, _ = sectors_model("crown_ibp", epochs=2)
    eps = check_epsilon(0.04)
    ref = tf.argmax(model.f(x[:20]), -1, output_type=tf.int32)

    def worst(beta, bound="crown_ibp"):
        return compute_margins(model.network, x[:20], eps, [], bound, ref, [], 0,
                               beta=beta).worst.numpy()
    np.testing.assert_allclose(worst(0.3), 0.7 * worst(1.0, "ibp") + 0.3 * worst(1.0),
                               rtol=1e-5, atol=1e-5)


def test_ties_are_never_certified():
    f = keras.Sequential([keras.Input((2,)), Dense(4), ReLU(), Dense(3)])
    f.layers[-1].kernel.assign(np.zeros((4, 3), np.float32))
    f.layers[-1].bias.assign(np.zeros(3, np.float32))
    model = gl.LinfCertifiedNet(f, 0.01)
    certificate = model.certify(np.zeros((4, 2), np.float32))
    assert list(certificate.reason) == ["tie"] * 4 and not certificate.certified.any()


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_save_load_round_trip_is_exact(tmp_path, fmt):
    model, x, _ = sectors_model("optimized", epochs=2)
    model.beta.assign(0.25)
    path = tmp_path / f"linf.{fmt}"
    model.save(path)
    loaded = gl.load_model(path)
    assert isinstance(loaded, gl.LinfCertifiedNet) and loaded.relaxation == "optimized"
    assert float(loaded.beta.numpy()) == 0.25
    np.testing.assert_array_equal(loaded(x[:30]).numpy(), model(x[:30]).numpy())
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mnist_certified_points_resist_pgd_linf():
    keras.utils.set_random_seed(0)
    x, y = gl.data.load_numpy("mnist", "train")
    f = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), Dense(64),
                          ReLU(), Dense(10)])
    model = gl.LinfCertifiedNet(f, 0.05, relaxation="crown_ibp")
    model.compile(keras.optimizers.Adam(2e-3), loss="mixed_crossentropy")
    model.fit(x, y, batch_size=100, epochs=3, verbose=0,
              callbacks=[gl.training.EpsilonSchedule(0.05, 2)])
    xt, yt = gl.data.load_numpy("mnist", "test", limit=200)
    certificate = model.certify(xt, yt, attack_steps=0)
    rows = np.flatnonzero(certificate.certified)
    assert rows.size >= 20, certificate
    for seed in range(2):
        _, broken = gl.attacks.pgd_linf(model.f, xt[rows], yt[rows], 0.05, steps=50,
                                        clip=None, seed=seed)
        assert not broken.numpy().any()


def test_l2_crown_ibp_baseline_is_sound_on_the_disc():
    """'crown_ibp_l2' (the l2 box-and-ball walk with sound global norms, CROWN's backward
    pass closed in l2) as a LocalGloroNet bound: every point it certifies keeps its class
    on a dense disc of radius eps, and it certifies some points."""
    from conftest import disc_offsets
    from gloro_local.bounds import sound_global_norms
    keras.utils.set_random_seed(0)
    x, y = sectors(np.random.default_rng(0), 1500)
    f = keras.Sequential([keras.Input((2,)), Dense(32), ReLU(), Dense(32), ReLU(),
                          Dense(3)])
    model = gl.LocalGloroNet(f, 0.05, bound="crown_ibp_l2")
    model.compile(keras.optimizers.Adam(1e-2), loss="crossentropy")
    model.fit(x, y, batch_size=100, epochs=20, verbose=0)
    norms = [tf.constant(s, tf.float32) for s in sound_global_norms(model.network)]
    result = compute_margins(model.network, x[:200], check_epsilon(0.05), norms,
                             "crown_ibp_l2", None, [], 0, capped=True)
    top = np.max(result.logits.numpy(), -1)
    certified = np.flatnonzero(top > result.bottom.numpy())
    assert certified.size >= 20
    offsets = disc_offsets(0.05, grid=61, circle=240).astype(np.float32)
    for k in certified[:40]:
        predicted = np.argmax(model.f(x[k] + offsets).numpy(), -1)
        assert np.all(predicted == np.argmax(result.logits[k])), k
