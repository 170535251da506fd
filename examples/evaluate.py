"""Evaluates a saved model: clean, PGD and certified accuracy, bound statistics.

    python examples/evaluate.py MODEL_FILE --dataset mnist --split test --epsilon 1.58

MODEL_FILE is a LocalGloroNet, a LinfCertifiedNet or a plain Keras classifier
(keras.Sequential of Conv2D, Dense, ReLU and Flatten layers ending in a linear Dense
layer) saved as .keras or .h5; a plain classifier is wrapped with ``gl.wrap`` (l2) and
needs --epsilon. Without --dataset
the MNIST sample embedded in the package is used when full MNIST is not found; a named
--dataset must be found (--data_dir or tensorflow-datasets) or the script stops.

Prints clean accuracy, PGD accuracy, certified accuracy by the full certification
pipeline (local bound) and by the global bound alone, mean local and global Lipschitz
bounds, varying-neuron fractions and power-iteration steps per layer, points whose local
iteration did not converge, the upper/lower Lipschitz ratio and the time of every stage;
writes the summary as JSON (--report, default MODEL_FILE's name + '.eval.json', next to
it) and, with --plots DIR, PNG figures. For a LinfCertifiedNet --epsilon is the
l-infinity radius, PGD is PGD-linf and the certificate is ``model.certify`` (IBP, PGD,
CROWN-IBP, the optimised relaxation); the Lipschitz statistics do not apply and the
report lists them under 'skipped'. Bad flags stop at parsing with one line; other errors
are one line on stderr and exit code 1.
"""
import math
import os
import sys
import zipfile
from pathlib import Path

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's INFO/WARNING C++ logs
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

DATASETS = ("mnist", "cifar10", "tiny_imagenet")  # gloro_local.data.DATASETS (no TF import)
SPLITS = {"mnist": ("train", "test"), "cifar10": ("train", "test"),
          "tiny_imagenet": ("train", "val", "test")}

flags.DEFINE_enum("dataset", None, DATASETS,
                  "Dataset (default: MNIST, or its embedded sample when not found).")
flags.DEFINE_enum("split", "test", ("train", "val", "test"), "Dataset split.")
flags.DEFINE_float("epsilon", None, "radius, l2 or l-infinity as the model (default: the "
                   "model's epsilon; required for a plain Keras model).")
flags.DEFINE_string("data_dir", None, "Local data folder (see gloro_local.data).")
flags.DEFINE_integer("limit", None, "Evaluate only the first LIMIT examples.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
flags.DEFINE_string("report", None, "JSON report path (default: next to the model).")
flags.DEFINE_string("plots", None, "Folder for PNG plots (needs matplotlib).")
flags.DEFINE_integer("pgd_steps", 100, "PGD steps (step size eps / 4).", lower_bound=0)
flags.DEFINE_integer("restarts", 1, "PGD random restarts.", lower_bound=1)
flags.DEFINE_float("tol", 1e-4, "Power-iteration tolerance ||u_t+1 - u_t||.")
flags.DEFINE_integer("max_iterations", 2000, "Power-iteration budget per point.",
                     lower_bound=1)
flags.DEFINE_integer("lower_bound_points", 100,
                     "Points for the empirical Lipschitz lower bound (0: skip).",
                     lower_bound=0)
flags.DEFINE_enum("radius", "global", ("global", "layerwise"),
                  "Ball radius of the local bound's boxes: the paper's (global norms) or "
                  "layer-wise local radii (l2 models).")
flags.DEFINE_enum("boxes", "interval", ("interval", "relaxation"),
                  "Boxes of the local bound: the paper's box and ball, or also intersected "
                  "with CROWN's l2 bounds (about 10x slower on 2C2F; l2 models).")
flags.DEFINE_integer("seed", 0, "Seed of PGD and of the power-iteration starts.",
                     lower_bound=0)
FLAGS = flags.FLAGS
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _positive_finite(name):
    def check(value):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise flags.ValidationError(
                f"{name} must be a finite number > 0. Received: {name}={value!r}")
        return True
    return check


def _split_of_dataset(values):
    dataset = values["dataset"] or "mnist"
    if values["split"] not in SPLITS[dataset]:
        raise flags.ValidationError(
            f"split must be one of {', '.join(SPLITS[dataset])} for {dataset}. "
            f"Received: split={values['split']!r}")
    return True


def _existing_folder(value):
    if value is not None and not Path(value).expanduser().is_dir():
        raise flags.ValidationError(
            f"data_dir must be an existing folder. Received: data_dir={value!r}")
    return True


for _name in ("epsilon", "tol"):
    flags.register_validator(_name, _positive_finite(_name))
flags.register_validator("data_dir", _existing_folder)
flags.register_multi_flags_validator(["dataset", "split"], _split_of_dataset)


def check_flags(argv):
    """The model path; ValueError / FileNotFoundError for a bad MODEL_FILE argument
    (checked before TensorFlow is imported, so that it fails fast)."""
    if len(argv) != 2:
        raise ValueError("expected exactly one MODEL_FILE argument "
                         f"(got {len(argv) - 1}); usage: evaluate.py MODEL_FILE [flags]")
    path = Path(argv[1])
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not (path.suffix == ".keras" and zipfile.is_zipfile(path)
            or path.suffix == ".h5" and head == HDF5_SIGNATURE):
        raise ValueError(f"{str(path)!r} is not a model saved as .keras (zip) or .h5 (HDF5)")
    return path


def load(path, epsilon):
    """The model in ``path`` ready to certify: a LinfCertifiedNet as saved (``epsilon``
    set when given), any other model through ``gl.wrap``; ValueError when the file holds
    no Keras model or a layer the bounds do not support."""
    import gloro_local as gl

    try:
        model = gl.load_model(path, compile=False)
    except Exception as error:  # corrupt or foreign files fail in many ways
        raise ValueError(f"Could not load a Keras model from {str(path)!r}: "
                         f"{type(error).__name__}: {error}") from error
    if isinstance(model, gl.LinfCertifiedNet):
        if epsilon is not None:
            model.epsilon = epsilon
        return model
    try:
        return gl.wrap(model, epsilon)
    except TypeError as error:  # a layer the bounds do not support
        raise ValueError(f"cannot certify {str(path)!r}: {error}") from error


def run(path):
    import gloro_local as gl

    model = load(path, FLAGS.epsilon)
    tighter = FLAGS.radius != "global" or FLAGS.boxes != "interval"
    if tighter and isinstance(model, gl.LinfCertifiedNet):
        raise ValueError("--radius and --boxes choose the l2 local bound; an l-infinity "
                         f"model has none. Received: --radius={FLAGS.radius} "
                         f"--boxes={FLAGS.boxes}")
    dataset = FLAGS.dataset or "mnist"
    x, y = gl.data.load_numpy(dataset, FLAGS.split, data_dir=FLAGS.data_dir,
                              limit=FLAGS.limit, sample_fallback=FLAGS.dataset is None)
    gl.bounds.input_checks.check_images(x, f"{dataset}/{FLAGS.split} images")
    expected = tuple(model.network.input_shape)
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"the model expects inputs of shape {expected}, but "
                         f"{dataset}/{FLAGS.split} has {tuple(x.shape[1:])}")
    report = gl.evaluate(model, (x, y), FLAGS.epsilon, pgd_steps=FLAGS.pgd_steps,
                         restarts=FLAGS.restarts, tol=FLAGS.tol,
                         max_iterations=FLAGS.max_iterations, batch_size=FLAGS.batch_size,
                         lower_bound_points=FLAGS.lower_bound_points, seed=FLAGS.seed,
                         **({"radius": FLAGS.radius, "boxes": FLAGS.boxes} if tighter else {}))
    report.summary.update(model=str(path), model_class=type(model).__name__,
                          dataset=dataset, split=FLAGS.split)
    print(report.table())
    target = Path(FLAGS.report) if FLAGS.report else path.with_name(path.name + ".eval.json")
    report.save_json(target)
    print(f"report: {target}")
    if FLAGS.plots:
        for figure in gl.evaluation.save_plots(report, FLAGS.plots):
            print(f"plot: {figure}")


def main(argv):
    try:
        run(check_flags(argv))
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError,
            ImportError) as error:
        message = " ".join(str(error).split())
        sys.exit(f"evaluate.py: error: {message}")


if __name__ == "__main__":
    app.run(main)
