"""The papers' hyper-parameters as named presets (Huang et al. 2021, appendix table 3 and
the authors' run scripts). Values are overrides of ``experiment.Config``."""

# MNIST 4C3F, local bound + GloRo loss (Local-Lip-G): 300 epochs, eps ramp 150 epochs.
_MNIST = dict(dataset="mnist", arch="4C3F", activation="relu_theta", theta_init=2.0,
              epsilon=1.58, eps_train=1.75, eps_ramp_epochs=150, epochs=300, batch_size=256,
              loss="crossentropy", power_iterations=5, worst_logit_steps=10, lr=1e-3,
              end_lr=5e-7, lr_constant_epochs=25)

# CIFAR-10, local bound + BCP loss (Local-Lip-B), eps = 36/255: 800 epochs, ramp 400.
_CIFAR10 = dict(dataset="cifar10", arch="4C3F", activation="relu_theta", theta_init=2.0,
                epsilon=0.141, eps_train=0.1551, eps_ramp_epochs=400, epochs=800,
                batch_size=256, loss="bcp", lam_start=0.0, lam_end=1.0, lam_ramp_epochs=400,
                power_iterations=2, lr=1e-3, end_lr=1e-6, lr_constant_epochs=25)

PRESETS = {
    # Quick default: runs in minutes on 2 CPU cores on the embedded MNIST sample.
    "quick_mnist": dict(dataset="mnist", arch="2C2F", activation="relu_theta",
                        epsilon=0.3, eps_train=0.35, eps_ramp_epochs=2, epochs=4,
                        batch_size=128, loss="crossentropy", power_iterations=2, lr=1e-3,
                        end_lr=1e-4, lr_constant_epochs=2),
    "paper_mnist_4C3F": _MNIST,
    "paper_cifar10_4C3F": _CIFAR10,
    "paper_cifar10_6C2F": {**_CIFAR10, "arch": "6C2F"},
    "paper_cifar10_6C2F_gloro_loss": {**_CIFAR10, "arch": "6C2F", "loss": "crossentropy",
                                      "lam_start": None, "lam_end": None,
                                      "lam_ramp_epochs": 0},
    "paper_cifar10_6C2F_maxmin": {**_CIFAR10, "arch": "6C2F",
                                  "activation": "clipped_maxmin", "theta_init": 1.0},
}
