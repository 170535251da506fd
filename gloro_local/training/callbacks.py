"""Schedules for epsilon, the loss's lambda and the learning rate (ramps, a delayed start
and step decay), and the epoch-end convergence of the global power iterates."""
import math

import keras

from gloro_local.bounds import StoppingRule


def _ramp(progress, start, end, shape):
    """Interpolates start -> end for progress in [0, 1] ('linear' or 'log')."""
    progress = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return start + progress * (end - start)
    return math.exp(math.log(start) + progress * (math.log(end) - math.log(start)))


class _BatchRamp(keras.callbacks.Callback):
    """Per-batch interpolation over ``epochs`` epochs: progress = (epoch + b / steps) / epochs."""

    def __init__(self, epochs):
        super().__init__()
        if epochs < 0:
            raise ValueError(f"the ramp length must be >= 0 epochs, got {epochs}.")
        self.epochs = epochs
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self.on_train_batch_begin(0)

    def progress(self, batch):
        if self.epochs == 0:
            return 1.0
        steps = self.params.get("steps") or 1
        return (self._epoch + batch / steps) / self.epochs


class EpsilonSchedule(_BatchRamp):
    """Ramps ``model.epsilon`` from ``start`` to ``eps_train`` over ``epochs`` epochs,
    interpolated per batch ('linear' or 'log' shape), then holds eps_train (never
    overshoots). Validation (``on_test_begin``) and the end of training use ``eps_test``.

    Args:
        eps_train: final training radius (the paper trains slightly above eps_test).
        epochs: ramp length in epochs.
        eps_test: radius for evaluation; defaults to eps_train.
        start: first radius, > 0; defaults to eps_train / 1000.
        shape: 'linear' or 'log'.
    """

    def __init__(self, eps_train, epochs, eps_test=None, start=None, shape="linear"):
        super().__init__(epochs)
        if shape not in ("linear", "log"):
            raise ValueError(f"shape must be 'linear' or 'log', got {shape!r}.")
        self.eps_train = float(eps_train)
        self.eps_test = float(eps_train if eps_test is None else eps_test)
        self.start = float(self.eps_train / 1000.0 if start is None else start)
        for name in ("eps_train", "eps_test", "start"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value}.")
        self.shape = shape
        self._current = self.start

    def on_train_batch_begin(self, batch, logs=None):
        self._current = _ramp(self.progress(batch), self.start, self.eps_train, self.shape)
        self.model.epsilon = self._current

    def on_test_begin(self, logs=None):
        self.model.epsilon = self.eps_test

    def on_test_end(self, logs=None):
        self.model.epsilon = self._current

    def on_train_end(self, logs=None):
        self.model.epsilon = self.eps_test


class LambdaSchedule(_BatchRamp):
    """Ramps the robust loss's ``lam`` linearly from ``start`` to ``end`` over ``epochs``
    epochs, per batch (BCP: 0 -> 1). Both ends must be >= 0, so lam never goes negative.
    """

    def __init__(self, start, end, epochs):
        super().__init__(epochs)
        if start < 0 or end < 0:
            raise ValueError(f"lambda must stay >= 0, got start={start}, end={end}.")
        self.start, self.end = float(start), float(end)

    def on_train_batch_begin(self, batch, logs=None):
        value = _ramp(self.progress(batch), self.start, self.end, "linear")
        self.model.robust_loss.lam.assign(max(value, 0.0))


class KappaSchedule(LambdaSchedule):
    """Ramps kappa, the weight of the natural loss in the mixed loss kappa CE(z, y) +
    (1 - kappa) CE(z*, y) ('mixed_crossentropy', whose lam is 1 - kappa), linearly from
    ``start`` to ``end`` over ``epochs`` epochs (CROWN-IBP: 1 -> 0). Both in [0, 1]."""

    def __init__(self, start, end, epochs):
        for name, value in (("start", start), ("end", end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"kappa must stay in [0, 1]. Received: {name}={value}")
        super().__init__(1.0 - start, 1.0 - end, epochs)


class BetaSchedule(_BatchRamp):
    """Ramps ``model.beta`` of a ``LinfCertifiedNet`` (the weight of the relaxation's
    margins against IBP's) linearly from ``start`` to ``end`` over ``epochs`` epochs, per
    batch (CROWN-IBP 1 -> 0). Both in [0, 1]."""

    def __init__(self, start, end, epochs):
        super().__init__(epochs)
        for name, value in (("start", start), ("end", end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"beta must stay in [0, 1]. Received: {name}={value}")
        self.start, self.end = float(start), float(end)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.beta.assign(_ramp(self.progress(batch), self.start, self.end, "linear"))


class LearningRateSchedule(keras.callbacks.Callback):
    """The paper's schedule (eq. 27): ``lr`` for the first ``constant_epochs`` epochs, then
    exponential decay reaching ``end_lr`` at the last epoch:
        lr_e = lr * (end_lr / lr) ** ((e - m) / (E - 1 - m))   for e >= m.

    Args:
        lr, end_lr: first and last learning rates (> 0).
        constant_epochs: m. total_epochs: E (defaults to the ``epochs`` given to fit).
    """

    def __init__(self, lr, end_lr, constant_epochs, total_epochs=None):
        super().__init__()
        if lr <= 0 or end_lr <= 0:
            raise ValueError("learning rates must be > 0.")
        self.lr, self.end_lr = float(lr), float(end_lr)
        self.constant_epochs = int(constant_epochs)
        self.total_epochs = total_epochs

    def rate(self, epoch):
        total = self.total_epochs or self.params.get("epochs") or 1
        decay_epochs = total - 1 - self.constant_epochs
        if epoch < self.constant_epochs or decay_epochs <= 0:
            return self.lr
        fraction = min((epoch - self.constant_epochs) / decay_epochs, 1.0)
        return self.lr * (self.end_lr / self.lr) ** fraction

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(epoch))


class ConvergeGlobalNorms(keras.callbacks.Callback):
    """Before validation and at every epoch end, iterates the global power-iteration
    vectors until the ``StoppingRule`` holds (as GloRo converges its norms), so that
    validation, ``model(x)`` and saved models use converged global estimates.
    ``LocalGloroNet.fit`` adds it automatically. (Certificates do not depend on it: they
    use sound global norms.)

    Args:
        rule: the ``StoppingRule`` of the global iteration.
    """

    def __init__(self, rule=StoppingRule(max_iterations=2000, tol=1e-4)):
        super().__init__()
        self.rule = rule.check()

    def _converge(self):
        self.model.global_norms.converge(self.model.hidden_seams(), self.rule)

    def on_test_begin(self, logs=None):
        self._converge()

    def on_epoch_end(self, epoch, logs=None):
        self._converge()


class Delayed(keras.callbacks.Callback):
    """Runs a ramp callback (``EpsilonSchedule``, ``LambdaSchedule``) ``epochs`` epochs
    late. During the first ``epochs`` epochs (the warm-up) ``hold(model)`` sets the value
    to keep (the ramp's first value); then the ramp runs with epoch numbers shifted by
    ``epochs``. Evaluation and end-of-training hooks pass through unchanged."""

    def __init__(self, schedule, epochs, hold):
        super().__init__()
        self.schedule, self.epochs, self.hold = schedule, int(epochs), hold
        self._warming = True

    def set_model(self, model):
        super().set_model(model)
        self.schedule.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.schedule.set_params(params)

    def on_epoch_begin(self, epoch, logs=None):
        self._warming = epoch < self.epochs
        if self._warming:
            self.hold(self.model)
        else:
            self.schedule.on_epoch_begin(epoch - self.epochs, logs)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._warming:
            self.schedule.on_train_batch_begin(batch, logs)

    def on_test_begin(self, logs=None):
        self.schedule.on_test_begin(logs)

    def on_test_end(self, logs=None):
        self.schedule.on_test_end(logs)

    def on_train_end(self, logs=None):
        self.schedule.on_train_end(logs)


class StepDecay(keras.callbacks.Callback):
    """Step decay of the learning rate, set at every epoch begin: ``lr`` times ``factor``
    to the number of ``milestones`` reached (epoch >= milestone) plus, with ``every`` > 0,
    floor((epoch - start) / every) for epochs >= start (0 before ``start``): the
    paper's CIFAR-10 rate halves at epochs start + 10, start + 20, ...

    Args:
        lr: the initial learning rate (> 0).
        factor: the decay factor in (0, 1] (0.1: the rate drops to a tenth).
        milestones: epochs (0-based) at which the rate is multiplied by ``factor``.
        every, start: decay every ``every`` epochs counted from epoch ``start``.
    """

    def __init__(self, lr, factor, milestones=(), every=0, start=0):
        super().__init__()
        if not lr > 0 or not 0 < factor <= 1:
            raise ValueError(f"StepDecay needs lr > 0 and factor in (0, 1]. Received: "
                             f"lr={lr}, factor={factor}")
        self.lr, self.factor = float(lr), float(factor)
        self.milestones, self.every, self.start = sorted(milestones), int(every), int(start)

    def rate(self, epoch):
        """The learning rate of ``epoch`` (0-based)."""
        steps = sum(epoch >= milestone for milestone in self.milestones)
        if self.every:
            steps += max(epoch - self.start, 0) // self.every
        return self.lr * self.factor ** steps

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(epoch))
