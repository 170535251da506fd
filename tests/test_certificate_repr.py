"""``repr(certificate)`` is a one-line summary; the arrays stay available as fields."""
import keras
import numpy as np

from gloro_local import LocalGloroNet
from gloro_local.evaluation import REASONS, Certificate, certify
from gloro_local.layers import Dense, ReLU


def certificate(reasons, radius=None):
    n = len(reasons)
    reasons = np.array(reasons)
    return Certificate(epsilon=0.3, prediction=np.zeros(n, np.int32),
                       certified=np.isin(reasons, ("global", "local")), reason=reasons,
                       bound=np.full(n, "local"), margin=np.linspace(-1, 1, n),
                       lipschitz=np.ones(n), global_lipschitz=np.full(n, 2.0),
                       iterations=np.ones((n, 2), np.int32), radius=radius)


def test_repr_of_500_samples_is_one_short_line_with_the_counts():
    reasons = ["global"] * 200 + ["local"] * 100 + ["attacked"] * 120 + ["wrong class"] * 80
    text = repr(certificate(reasons))
    assert text == ("Certificate(samples=500, epsilon=0.3, certified=300 (60.00%), "
                    "reasons={global: 200, local: 100, attacked: 120, wrong class: 80})")
    assert str(certificate(reasons)) == text
    assert certificate(reasons).margin.shape == (500,)  # the arrays are still fields


def test_repr_lists_reasons_in_the_order_of_REASONS_and_the_radius_statistics():
    radius = np.full(6, np.nan, np.float32)
    radius[:4] = [0.0, 0.2, 0.4, 1.0]
    text = repr(certificate(list(reversed(REASONS[:6])), radius))
    order = [text.index(f"{reason}: 1") for reason in REASONS[:6]]
    assert order == sorted(order)
    assert text.endswith("radius: mean 0.4, median 0.3 over 4 samples)")


def test_repr_of_an_empty_certificate():
    assert repr(certificate([])) == ("Certificate(samples=0, epsilon=0.3, certified=0 (n/a), "
                                      "reasons={})")


def test_repr_of_a_real_certificate_matches_its_fields():
    f = keras.Sequential([keras.Input((3,)), Dense(4), ReLU(), Dense(3)])
    model = LocalGloroNet(f, epsilon=0.1)
    x = np.random.default_rng(0).uniform(size=(40, 3)).astype(np.float32)
    c = certify(model, x)
    text = repr(c)
    assert "\n" not in text and "array" not in text and len(text) < 200
    assert f"samples=40, epsilon=0.1, certified={c.certified.sum()} " in text
    for reason, count in c.counts().items():
        assert f"{reason}: {count}" in text
