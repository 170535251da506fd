"""The papers' hyper-parameters as named presets. Values are overrides of
``experiment.Config``.

Sources: Huang et al. 2021, appendix Table 3 (learning rates, batch size, eps_train,
sparsity weights, warm-up, total, LR-decay and eps-ramp epochs, power iterations), and the
authors' run scripts and model code for what the table leaves out: the loss, the
worst-logit clipping steps, the initial ReLU-theta threshold (their MNIST and CIFAR-10
4C3F models ignore ``--init`` and start at 1.0; 6C2F starts at 2.0), the per-layer MaxMin
thresholds and the Tiny-ImageNet layers that keep per-sample norms (memory).
"""

# MNIST 4C3F, local bound + GloRo loss (Local-Lip-G).
_MNIST = dict(dataset="mnist", arch="4C3F", activation="relu_theta", theta_init=1.0,
              epsilon=1.58, eps_train=1.58, eps_warmup_epochs=0, eps_ramp_epochs=150,
              epochs=300, batch_size=256, loss="crossentropy", power_iterations=5,
              worst_logit_steps=10, lr=1e-3, end_lr=5e-6, lr_constant_epochs=150,
              lam_sparse=0.0, lam_theta=0.0)

# CIFAR-10, local bound + BCP loss (Local-Lip-B), eps = 36/255. Twenty warm-up epochs of
# clean training (BCP's lambda is 0), then epsilon and lambda ramp together.
_CIFAR10 = dict(dataset="cifar10", arch="4C3F", activation="relu_theta", theta_init=1.0,
                epsilon=0.141, eps_train=0.1551, eps_warmup_epochs=20, eps_ramp_epochs=400,
                epochs=800, batch_size=256, loss="bcp", lam_start=0.0, lam_end=1.0,
                lam_ramp_epochs=400, power_iterations=2, worst_logit_steps=1, lr=1e-3,
                end_lr=1e-6, lr_constant_epochs=400, lam_sparse=0.0, lam_theta=0.0)

# The reference code's clipped MaxMin thresholds, one (upper, lower) per activation layer.
_CIFAR10_MAXMIN = dict(activation="clipped_maxmin",
                       maxmin_upper=[0.1, 0.1, 0.15, 0.15, 0.2, 0.3, 1.2],
                       maxmin_lower=[-0.1, -0.15, -0.15, -0.15, -0.2, -0.3, -1.2])

# Tiny-ImageNet 8C2F, local bound + BCP loss; per-sample norms on the hidden linear
# layers 0, 3, 6, 7 and 8 only (the reference code's choice for memory).
_TINY = dict(dataset="tiny_imagenet", arch="8C2F", activation="relu_theta",
             theta_init=1.0, epsilon=0.141, eps_train=0.16, eps_warmup_epochs=0,
             eps_ramp_epochs=125, epochs=250, batch_size=128, loss="bcp", lam_start=0.0,
             lam_end=1.0, lam_ramp_epochs=125, power_iterations=1, worst_logit_steps=1,
             local_layers=[0, 3, 6, 7, 8], lr=2.5e-4, end_lr=5e-7, lr_constant_epochs=150,
             lam_sparse=0.01, lam_theta=0.1)

_TINY_MAXMIN_UPPER = [0.8, 1.0, 1.4, 1.4, 1.4, 1.6, 2.0, 3.0, 1.6]

PRESETS = {
    # Quick default: runs in minutes on 2 CPU cores; MNIST with the embedded sample when
    # full MNIST is not found (dataset=None).
    "quick_mnist": dict(dataset=None, arch="2C2F", activation="relu_theta",
                        epsilon=0.3, eps_train=0.35, eps_ramp_epochs=2, epochs=4,
                        batch_size=128, loss="crossentropy", power_iterations=2, lr=1e-3,
                        end_lr=1e-4, lr_constant_epochs=2),
    "paper_mnist_4C3F": _MNIST,
    "paper_cifar10_4C3F": _CIFAR10,
    "paper_cifar10_6C2F": {**_CIFAR10, "arch": "6C2F", "theta_init": 2.0},
    "paper_cifar10_6C2F_gloro_loss": {**_CIFAR10, "arch": "6C2F", "theta_init": 2.0,
                                      "loss": "crossentropy", "lam_start": None,
                                      "lam_end": None, "lam_ramp_epochs": 0},
    "paper_cifar10_6C2F_maxmin": {**_CIFAR10, "arch": "6C2F", **_CIFAR10_MAXMIN},
    "paper_tiny_imagenet_8C2F": _TINY,
    "paper_tiny_imagenet_8C2F_maxmin": {
        **_TINY, "activation": "clipped_maxmin", "lr": 1e-4, "power_iterations": 3,
        "maxmin_upper": _TINY_MAXMIN_UPPER,
        "maxmin_lower": [-value for value in _TINY_MAXMIN_UPPER]},
}
