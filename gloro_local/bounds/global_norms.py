"""Warm-started global spectral norms of every hidden linear layer (training)."""
import keras
import tensorflow as tf

from gloro_local.bounds.power_iteration import MaskedOperator, StoppingRule, power_iteration


@keras.saving.register_keras_serializable(package="gloro_local")
class GlobalNorms(keras.layers.Layer):
    """Holds one power-iteration vector u_l per hidden linear layer, shape (1,) + input.

    ``norms(seams, iterations)`` runs ``iterations`` steps u <- A^T A u / ||A^T A u|| from
    the stored vectors (warm start), stores the result and returns sigma_l = ||A u||
    (differentiable in the weights). ``converge(seams, rule)`` iterates until the
    ``StoppingRule`` holds. sigma_l never exceeds ||A_l||_2 and approaches it as the
    iteration converges, but it is an estimate: training and monitoring use it, while
    certificates use the sound bounds of ``sound_norms``. The vectors are non-trainable
    Keras variables, saved with the model and aggregated from the first replica under a
    distribution strategy.

    Args:
        input_shapes: per-sample input shape of each hidden linear layer.
        seed: seed of the random initial vectors.
    """

    def __init__(self, input_shapes, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.input_shapes = [tuple(int(d) for d in shape) for shape in input_shapes]
        self.seed = int(seed)
        self.iterates = [
            self.add_weight(name=f"iterate_{k}", shape=(1,) + shape,
                            initializer=keras.initializers.RandomNormal(seed=self.seed + k),
                            trainable=False, aggregation="only_first_replica")
            for k, shape in enumerate(self.input_shapes)]
        self.converge_runs = {}

    def _run(self, seams, budget):
        results = []
        for seam, shape, iterate in zip(seams, self.input_shapes, self.iterates):
            result = power_iteration(MaskedOperator(seam, shape),
                                     tf.cast(iterate, tf.float32), budget)
            if budget:
                iterate.assign(tf.cast(result.u, iterate.dtype))
            results.append(result)
        return results

    def norms(self, seams, iterations=1):
        """Warm-started sigma_l for each layer after ``iterations`` steps (list of scalars);
        with ``iterations=0`` the stored vectors are used as they are and not written."""
        return [tf.squeeze(r.sigma, 0) for r in self._run(seams, iterations)]

    def converge(self, seams, rule=StoppingRule(max_iterations=10000, tol=1e-5)):
        """Iterates every layer until ``rule`` holds; returns (sigmas, converged), lists of
        Python floats and bools. The loop runs as one traced function, traced once per
        layer list and rule."""
        key = (tuple(id(seam) for seam in seams), rule.check())
        if key not in self.converge_runs:
            self.converge_runs[key] = tf.function(
                lambda: [(tf.squeeze(r.sigma, 0), tf.squeeze(r.converged, 0))
                         for r in self._run(seams, rule)])
        results = self.converge_runs[key]()
        return [float(sigma) for sigma, _ in results], [bool(done) for _, done in results]

    def get_config(self):
        return {**super().get_config(), "input_shapes": [list(s) for s in self.input_shapes],
                "seed": self.seed}
