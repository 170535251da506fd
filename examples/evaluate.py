"""Evaluates a saved LocalGloroNet: clean, PGD and certified accuracy, bound statistics.

    python examples/evaluate.py MODEL_FILE --dataset mnist --split test --epsilon 1.58

Prints clean accuracy, PGD accuracy, certified accuracy by the full certification
pipeline (local bound) and by the global bound alone, mean local and global Lipschitz
bounds, varying-neuron fractions and power-iteration steps per layer, points whose local
iteration did not converge, the upper/lower Lipschitz ratio and the time of every stage;
writes the summary as JSON (--report, default MODEL_FILE's name + '.eval.json', next to
it) and, with --plots DIR, PNG figures. Errors are one line on stderr and exit code 1.
"""
import os
import sys
import zipfile
from pathlib import Path

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's INFO/WARNING C++ logs
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

flags.DEFINE_string("dataset", "mnist", "mnist, cifar10 or tiny_imagenet.")
flags.DEFINE_string("split", "test", "Dataset split.")
flags.DEFINE_float("epsilon", None, "l2 radius (default: the model's epsilon).")
flags.DEFINE_string("data_dir", None, "Local data folder (see gloro_local.data).")
flags.DEFINE_integer("limit", None, "Evaluate only the first LIMIT examples.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_string("report", None, "JSON report path (default: next to the model).")
flags.DEFINE_string("plots", None, "Folder for PNG plots (needs matplotlib).")
flags.DEFINE_integer("pgd_steps", 100, "PGD steps (step size eps / 4).")
flags.DEFINE_integer("restarts", 1, "PGD random restarts.")
flags.DEFINE_float("tol", 1e-4, "Power-iteration tolerance ||u_t+1 - u_t||.")
flags.DEFINE_integer("max_iterations", 2000, "Power-iteration budget per point.")
flags.DEFINE_integer("lower_bound_points", 100,
                     "Points for the empirical Lipschitz lower bound (0: skip).")
flags.DEFINE_integer("seed", 0, "Seed of PGD and of the power-iteration starts.")
FLAGS = flags.FLAGS
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_flags(argv):
    """The model path; ValueError / FileNotFoundError for bad arguments (checked before
    TensorFlow is imported, so that they fail fast)."""
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
    if FLAGS.epsilon is not None and not FLAGS.epsilon > 0:
        raise ValueError(f"--epsilon must be > 0, got {FLAGS.epsilon}")
    for name in ("batch_size", "pgd_steps", "restarts", "max_iterations", "limit"):
        value = getattr(FLAGS, name)
        if value is not None and value < (0 if name == "pgd_steps" else 1):
            raise ValueError(f"--{name} must be positive, got {value}")
    if not FLAGS.tol > 0:
        raise ValueError(f"--tol must be > 0, got {FLAGS.tol}")
    return path


def run(path):
    import gloro_local as gl

    try:
        model = gl.load_model(path, compile=False)
    except Exception as error:  # corrupt or foreign files fail in many ways
        raise ValueError(f"could not load a model from {str(path)!r}: {error}") from error
    x, y = gl.data.load_numpy(FLAGS.dataset, FLAGS.split, data_dir=FLAGS.data_dir,
                              limit=FLAGS.limit)
    expected = tuple(model.network.input_shape)
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"the model expects inputs of shape {expected}, but "
                         f"{FLAGS.dataset}/{FLAGS.split} has {tuple(x.shape[1:])}")
    report = gl.evaluate(model, (x, y), FLAGS.epsilon, pgd_steps=FLAGS.pgd_steps,
                         restarts=FLAGS.restarts, tol=FLAGS.tol,
                         max_iterations=FLAGS.max_iterations, batch_size=FLAGS.batch_size,
                         lower_bound_points=FLAGS.lower_bound_points, seed=FLAGS.seed)
    report.summary.update(model=str(path), dataset=FLAGS.dataset, split=FLAGS.split)
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
