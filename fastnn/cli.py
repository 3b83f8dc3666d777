"""The fastnn command.

  fastnn spiral               the notes' case study (given a trainer option, its 2-layer
                              net is trained by a Trainer)
  fastnn train DATA           train an MLP classifier on a .npz file (arrays X, y) or a
                              .csv file (last column the label) and save it
  fastnn predict MODEL DATA   the labels a saved model predicts for DATA's rows
  fastnn export MODEL OUT     a saved model as an ONNX file (the onnx extra)
  fastnn search               random search, random local search and gradient descent
                              on the spiral's linear classifier, same budget
  fastnn config               the backend, OpenMP, threads and BLAS in use

Every option, path and data file is checked before any training starts; a bad one gets
one line on stderr ("fastnn COMMAND: error: ...") and exit status 2, never a traceback.
"""
import argparse
import math
import os
import sys
import tempfile
import warnings

from . import __version__

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
DTYPES = ("float64", "float32")
MODEL_SUFFIX = ".fastnn.safetensors"
#: The spiral data set of the case study: 100 points for each of 3 classes.
SPIRAL_ROWS = 300
_SEED_MAX = 2**32 - 1       # numpy's RandomState, which the case study seeds, takes no more


class UsageError(Exception):
    """A bad option, path or data file: reported as one line, exit status 2."""


def _one_line(text):
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message`` (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


# ---- option types: their messages never name a Python function -------------------------

def _int_type(minimum, maximum=None):
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}") \
                from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _float_type(low=None, high=None, *, low_open=False, high_open=False):
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    bound = " and ".join(parts)

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if ((low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def _layer_sizes(text):
    """'100,50' -> [100, 50]; '' -> [] (no hidden layer: a linear classifier)."""
    text = text.strip()
    if not text:
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = None
    if sizes is None or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths >= 1 such as 100,50, got {text!r}")
    return sizes


_layer_sizes.__name__ = "layer sizes"
_positive_int = _int_type(1)
_seed = _int_type(0, _SEED_MAX)
_lr = _float_type(0.0, low_open=True)


# ---- the parser ------------------------------------------------------------------------------

def _add_trainer_options(p, *, spiral):
    """The trainer's options, shared by spiral and train."""
    dflt = (lambda spiral_text, train_text: spiral_text if spiral else train_text)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None if spiral else "adam",
                   help=dflt("(default sgd)", "(adam)"))
    p.add_argument("--lr", type=_lr, default=None,
                   help=dflt("learning rate (default: --step-size for sgd, else the "
                             "optimizer's own, 1e-3)",
                             "learning rate (default: the optimizer's own, 1e-3; "
                             "sgd 0.1)"))
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help=dflt("rows per step (default: full batch, the case study)",
                             "rows per step (default: 32, or all the training rows if "
                             "fewer)"))
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=dflt("epochs (default: --steps steps)", "(100)"))
    p.add_argument("--dropout", type=_float_type(0.0, 1.0, low_open=True), default=None,
                   metavar="P", help="inverted dropout after every hidden layer, keeping "
                                     "each unit with probability P, 0 < P <= 1 (default "
                                     "none)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None if spiral else "relu",
                   help="of the hidden layers (relu)")


def build_parser():
    """The argparse parser of the ``fastnn`` command (subcommands spiral, train, predict,
    export, search, config)."""
    parser = _Parser(prog="fastnn", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("spiral", help="the spiral case study: linear softmax, then a "
                                       "2-layer ReLU net, trained by gradient descent",
                        description="The notes' spiral case study.  Any trainer option "
                                    "(--optimizer, --lr, --batch-size, --epochs, --dropout, "
                                    "--activation) has the 2-layer net trained by a Trainer "
                                    "instead of the notes' loop.")
    sp.set_defaults(prog=sp.prog)
    sp.add_argument("--seed", type=_seed, default=0, help="seed for data and weights (0)")
    sp.add_argument("--dtype", choices=DTYPES, default="float64")
    sp.add_argument("--hidden", type=_positive_int, default=100, help="hidden units (100)")
    sp.add_argument("--steps", type=_positive_int, default=None,
                    help="gradient steps of the 2-layer net (10000)")
    sp.add_argument("--linear-steps", type=_positive_int, default=200,
                    help="gradient steps of the linear classifier (200)")
    sp.add_argument("--step-size", type=_lr, default=1.0, help="(1.0)")
    sp.add_argument("--reg", type=_float_type(0.0), default=1e-3, help="L2 strength (1e-3)")
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="threads for kernels and BLAS (default: all cores)")
    sp.add_argument("--plot", metavar="DIR", default=None,
                    help="write the two decision-boundary PNGs into DIR")
    _add_trainer_options(sp, spiral=True)

    tr = sub.add_parser("train", help="train an MLP classifier on a .npz or .csv file",
                        description="Train an MLP classifier on DATA: a .npz file holding "
                                    "arrays X (N, D) and y (N,), or a .csv file whose last "
                                    "column is the label (a header row is detected; labels "
                                    "may be strings).  Saves the model with its classes.")
    tr.set_defaults(prog=tr.prog)
    tr.add_argument("data", metavar="DATA", help="a .npz or .csv file")
    tr.add_argument("--hidden", type=_layer_sizes, default=[100], metavar="SIZES",
                    help="hidden layer widths, comma-separated, e.g. 100,50 ('' for none: "
                         "a linear classifier) (100)")
    _add_trainer_options(tr, spiral=False)
    tr.add_argument("--reg", type=_float_type(0.0), default=0.0, help="L2 strength (0)")
    tr.add_argument("--validation-split", type=_float_type(0.0, 1.0, high_open=True),
                    default=0.0, metavar="F",
                    help="fraction of the rows held out for validation, 0 <= F < 1 (0)")
    tr.add_argument("--seed", type=_seed, default=0,
                    help="seed for weights, batches and the split (0)")
    tr.add_argument("--dtype", choices=DTYPES, default="float64")
    tr.add_argument("--threads", type=_positive_int, default=None,
                    help="threads for kernels and BLAS (default: all cores)")
    tr.add_argument("--output", "-o", metavar="PATH", default=None,
                    help=f"the model file (default: DATA's stem + {MODEL_SUFFIX} in the "
                         "current directory)")
    tr.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines")

    pr = sub.add_parser("predict", help="predict labels with a model saved by train",
                        description="Predict the labels of DATA's rows with MODEL (a file "
                                    "written by fastnn train).  DATA: a .npz file holding X "
                                    "(y, if there, is compared), a .npy file holding X, or "
                                    "a .csv file with the model's features (and optionally "
                                    "a last label column, then compared).")
    pr.set_defaults(prog=pr.prog)
    pr.add_argument("model", metavar="MODEL")
    pr.add_argument("data", metavar="DATA")
    pr.add_argument("--output", "-o", metavar="PATH", default=None,
                    help="write the predictions: CSV when PATH ends in .csv, else .npy "
                         "(default: one per line on stdout)")

    ex = sub.add_parser("export", help="write a saved model as an ONNX file",
                        description="Write MODEL (a fastnn model file) to OUT as an ONNX "
                                    "model: input X (N, D), output scores (N, K), in the "
                                    "model's dtype; its classes, if saved with it, go into "
                                    "the ONNX metadata as JSON.  Needs the onnx extra: pip "
                                    "install 'fastnn[onnx]'.")
    ex.set_defaults(prog=ex.prog)
    ex.add_argument("model", metavar="MODEL")
    ex.add_argument("output", metavar="OUT", help="the .onnx file to write")
    ex.add_argument("--probabilities", choices=("softmax", "sigmoid"), default=None,
                    help="add the output probabilities (default: none)")
    ex.add_argument("--label", action="store_true",
                    help="add the output label: the index of the largest score (int64)")
    ex.add_argument("--no-fold-batchnorm", action="store_true",
                    help="keep batch norm as BatchNormalization nodes (default: folded "
                         "into the preceding Linear)")

    se = sub.add_parser("search", help="the notes' optimization strategies on the spiral's "
                                       "linear classifier, same budget of loss evaluations",
                        description="Random search, random local search and gradient "
                                    "descent on the spiral's linear softmax classifier, "
                                    "each given the same number of loss evaluations (a "
                                    "gradient step counts as one), then the loss after one "
                                    "gradient step for step sizes 1e-10 ... 1e3.")
    se.set_defaults(prog=se.prog)
    se.add_argument("--budget", type=_int_type(2), default=1000,
                    help="loss evaluations per strategy, >= 2 (1000)")
    se.add_argument("--seed", type=_seed, default=0, help="seed for data, weights and "
                                                          "searches (0)")
    se.add_argument("--scale", type=_lr, default=1.0,
                    help="random search: standard deviation of every weight (1.0)")
    se.add_argument("--step", type=_lr, default=0.1,
                    help="random local search: standard deviation of a move (0.1)")
    se.add_argument("--step-size", type=_lr, default=1.0, help="gradient descent (1.0)")
    se.add_argument("--reg", type=_float_type(0.0), default=1e-3, help="L2 strength (1e-3)")
    se.add_argument("--dtype", choices=DTYPES, default="float64")
    se.add_argument("--plot", metavar="DIR", default=None,
                    help="write the curves and the step-size sweep to DIR/search.png")

    cf = sub.add_parser("config", help="print the backend, OpenMP, threads and BLAS in use")
    cf.set_defaults(prog=cf.prog)
    return parser


# ---- paths -----------------------------------------------------------------------------------

def _probe(directory, what):
    """UsageError unless a file can be created in directory (tried for real: as root,
    os.access says yes to /proc)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fastnn-", suffix=".probe")
    except OSError as exc:
        raise UsageError(f"{what}: cannot write in {directory}: "
                         f"{exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


def _check_output_dir(path, what):
    """A directory that exists or can be made, and in which files can be written."""
    if not path:
        raise UsageError(f"{what}: empty path")
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise UsageError(f"{what}: {path} exists and is not a directory")
    probe = full
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{what}: {probe} is not a directory")
    _probe(probe, what)


def _check_output_file(path, what, inputs=()):
    """A file path whose directory exists and is writable, that is not a directory and
    not one of the inputs."""
    if not path:
        raise UsageError(f"{what}: empty path")
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise UsageError(f"{what}: {path} is a directory")
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        raise UsageError(f"{what}: directory {directory} does not exist")
    if os.path.exists(full):
        if not os.access(full, os.W_OK):
            raise UsageError(f"{what}: {path} is not writable")
        for other in inputs:
            if os.path.exists(other) and os.path.samefile(full, other):
                raise UsageError(f"{what}: {path} is an input file; it would be overwritten")
    _probe(directory, what)


def _check_input_file(path, what):
    if not os.path.exists(path):
        raise UsageError(f"{what} {path}: no such file")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path}: not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} {path}: not readable")


def _suffix(path):
    return os.path.splitext(path)[1].lower()


# ---- data files ------------------------------------------------------------------------------

class Data:
    """A data file read and checked: X (N, D) float64, y (N,) labels or None, and the
    CSV header's names (None without one)."""

    def __init__(self, X, y=None, feature_names=None, label_name=None):
        self.X, self.y = X, y
        self.feature_names, self.label_name = feature_names, label_name


def _check_X(X, where):
    import numpy as np
    if X.dtype.kind not in "fiu":
        raise UsageError(f"{where}: X must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise UsageError(f"{where}: X must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise UsageError(f"{where}: X is empty (shape {X.shape})")
    X = np.asarray(X, dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise UsageError(f"{where}: X[{r}, {c}] is {X[r, c]}; every value must be finite")
    return X


def _check_y(y, n, where):
    import numpy as np
    if y.dtype.kind == "S":
        try:
            y = y.astype(str)
        except UnicodeDecodeError:
            raise UsageError(f"{where}: y holds bytes that are not text") from None
    if y.dtype.kind not in "biufU":
        raise UsageError(f"{where}: y must hold numbers or strings, got dtype {y.dtype}")
    if y.ndim != 1:
        raise UsageError(f"{where}: y must be 1-D (one label per row), got shape {y.shape}")
    if y.shape[0] != n:
        raise UsageError(f"{where}: y has {y.shape[0]} labels but X has {n} rows")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise UsageError(f"{where}: y contains NaN or infinity")
    return y


def _read_npz(path, *, need_y):
    import numpy as np
    where = path
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise UsageError(f"{where}: not a .npz archive")
            names = list(z.files)
            if "X" not in names or (need_y and "y" not in names):
                want = "arrays X and y" if need_y else "an array X"
                raise UsageError(f"{where}: needs {want}; it holds "
                                 f"{', '.join(names) or 'nothing'}")
            X = z["X"]
            y = z["y"] if "y" in names else None
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's error
        reason = _one_line(exc)
        if "pickle" in reason:
            reason = "it holds object arrays (save X and y as numbers or strings)"
        raise UsageError(f"{where}: cannot read it as .npz: {reason}") from None
    X = _check_X(X, where)
    return Data(X, None if y is None else _check_y(y, X.shape[0], where))


def _read_npy(path):
    import numpy as np
    try:
        X = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: cannot read it as .npy: {_one_line(exc)}") from None
    if not isinstance(X, np.ndarray):
        raise UsageError(f"{path}: not a .npy array")
    return Data(_check_X(X, path))


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_labels(texts):
    """Label strings -> an array: int64 when every label is an integer (1, 2.0), float64
    when every one is another finite number, else the strings themselves."""
    import numpy as np
    try:
        values = np.array([float(t) for t in texts])
    except ValueError:
        return np.array(texts, dtype=str)
    if not np.all(np.isfinite(values)):
        return np.array(texts, dtype=str)
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
        return values.astype(np.int64)
    return values


#: What a CSV file may write for a missing value (compared lower-cased).
_MISSING = frozenset({"na", "n/a", "nan", "null", "none", "?", "-"})


def _read_csv(path, *, n_features=None):
    """Read a CSV file: every row the features, then (training: always; prediction:
    when there is one more column than the model's features) the label.  The first row
    is a header when one of its feature fields is a name and none is empty or a
    missing-value marker such as NA (or when only its label is not a number and every
    other label is)."""
    import csv
    import numpy as np
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows, lines = [], []
            for row in reader:
                row = [field.strip() for field in row]
                if any(row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read it as CSV: {_one_line(exc)}") from None
    if not rows:
        raise UsageError(f"{path}: no rows")
    width = len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise UsageError(f"{path}: line {line} has {len(row)} fields, line {lines[0]} "
                             f"has {width}")
    if n_features is None:
        if width < 2:
            raise UsageError(f"{path}: needs at least 2 comma-separated columns "
                             f"(features, then the label), got {width}")
        n_feat, has_label = width - 1, True
    elif width in (n_features, n_features + 1):
        n_feat, has_label = n_features, width == n_features + 1
    else:
        raise UsageError(f"{path}: has {width} columns; the model takes {n_features} "
                         f"features (and an optional label column)")
    first = rows[0]
    # names, not data with a value missing: a feature field that is a name, and none
    # empty or a missing-value marker (a header may name a column "2019")
    fields = [t.strip() for t in first[:n_feat]]
    header = (any(t and not _is_number(t) and t.lower() not in _MISSING for t in fields)
              and not any(not t or t.lower() in _MISSING for t in fields))
    if not header and has_label and len(rows) > 1 and first[-1] and not _is_number(first[-1]):
        header = all(_is_number(row[-1]) for row in rows[1:])
    names = None
    if header:
        names, rows, lines = first, rows[1:], lines[1:]
        if not rows:
            raise UsageError(f"{path}: a header and no data rows")
    cells = [row[:n_feat] for row in rows]
    try:
        X = np.array(cells, dtype=np.float64)
    except ValueError:
        for row, line in zip(cells, lines):
            for j, text in enumerate(row):
                if not _is_number(text):
                    raise UsageError(f"{path}: line {line}, column {j + 1}: {text!r} is "
                                     "not a number") from None
        raise
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise UsageError(f"{path}: line {lines[i]}, column {j + 1}: {rows[i][j]!r} is not "
                         "a finite number")
    y = None
    if has_label:
        texts = [row[-1] for row in rows]
        for text, line in zip(texts, lines):
            if not text:
                raise UsageError(f"{path}: line {line}: the label is empty")
        y = parse_labels(texts)
    return Data(X, y, feature_names=None if names is None else names[:n_feat],
                label_name=None if names is None or not has_label else names[-1])


def read_training_data(path):
    """The Data of a training file (.npz with X and y, or .csv); UsageError if bad."""
    _check_input_file(path, "DATA")
    suffix = _suffix(path)
    if suffix == ".npz":
        return _read_npz(path, need_y=True)
    if suffix == ".csv":
        return _read_csv(path)
    raise UsageError(f"DATA {path}: expected a .npz or .csv file")


def read_prediction_data(path, n_features):
    """The Data of a file to predict (.npz, .npy or .csv); UsageError if bad."""
    _check_input_file(path, "DATA")
    suffix = _suffix(path)
    if suffix == ".npz":
        data = _read_npz(path, need_y=False)
    elif suffix == ".npy":
        data = _read_npy(path)
    elif suffix == ".csv":
        return _read_csv(path, n_features=n_features)
    else:
        raise UsageError(f"DATA {path}: expected a .npz, .npy or .csv file")
    if data.X.shape[1] != n_features:
        raise UsageError(f"{path}: X has {data.X.shape[1]} features; the model takes "
                         f"{n_features}")
    return data


# ---- the commands ----------------------------------------------------------------------------

def _require_plot(what):
    try:
        from . import plot
        plot.require()
    except ImportError as exc:
        raise UsageError(f"{what}: {exc}") from None
    return plot


def _set_threads(n):
    if n is not None:
        from .config import set_num_threads
        try:
            set_num_threads(n)
        except ValueError as exc:          # more than the cores: one line, status 2
            raise UsageError(f"--threads: {exc}") from None


def _fit(trainer, X, y, prog, **kwargs):
    """trainer.fit, its argument errors (raised before the first step) as UsageErrors
    and its warnings (a non-finite loss) as one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            history = trainer.fit(X, y, **kwargs)
        except (ValueError, TypeError) as exc:
            if trainer.history_ is not None:       # raised during training: a bug
                raise
            raise UsageError(_one_line(exc)) from None
    for w in caught:
        print(f"{prog}: warning: {_one_line(w.message)}", file=sys.stderr)
    if history.interrupted:
        print(f"{prog}: interrupted (Ctrl-C) after {len(history.step_loss)} steps",
              file=sys.stderr)
    return history


def _spiral_uses_trainer(args):
    return any(getattr(args, name) is not None for name in
               ("optimizer", "lr", "batch_size", "epochs", "dropout", "activation"))


def _spiral_trainer(args):
    """train_net for case_study.run: the 2-layer net trained by a Trainer."""
    import numpy as np
    from . import optim
    from .case_study import Result
    from .trainer import StepHistory, Trainer
    name = args.optimizer or "sgd"
    lr = args.lr if args.lr is not None else (args.step_size if name == "sgd" else None)
    optimizer = optim.get(name, **({} if lr is None else {"lr": lr}))
    batch = args.batch_size
    per_epoch = SPIRAL_ROWS // (batch or SPIRAL_ROWS)
    if args.epochs is not None:
        fit_kw, epochs = {"epochs": args.epochs}, args.epochs
        length = f"{args.epochs} epochs"
    else:
        steps = args.steps or 10_000
        fit_kw, epochs = {"steps": steps}, -(-steps // per_epoch)
        length = f"{steps} steps"

    def train_net(net, X, y, *, name, log):
        trainer = Trainer(net, optimizer=optimizer, batch_size=batch, reg=args.reg,
                          seed=args.seed, verbose=1)
        log(f"== {name}: Trainer, {optimizer!r}, "
            f"{'full batch' if batch is None else f'batches of {batch}'}, {length}, "
            f"reg {args.reg:g}, {args.dtype}")
        h = _fit(trainer, X, y, args.prog, record_every=max(1, epochs // 10), **fit_kw)
        loss = h.step_loss if len(h.step_loss) else np.array([np.nan])
        steps_run = len(h.step_loss)
        history = StepHistory(loss=loss, data_loss=h.step_data_loss,
                              seconds=float(np.sum(h.seconds)), steps=steps_run)
        return Result(name=name, net=net, history=history, accuracy=net.score(X, y))
    return train_net


def _spiral(args):
    from . import case_study
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    if args.batch_size is not None and args.batch_size > SPIRAL_ROWS:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the "
                         f"{SPIRAL_ROWS} rows of the spiral data")
    plot = None
    if args.plot is not None:
        plot = _require_plot("--plot")
        _check_output_dir(args.plot, "--plot")
    _set_threads(args.threads)
    train_net = _spiral_trainer(args) if _spiral_uses_trainer(args) else None
    X, y, linear, net = case_study.run(
        seed=args.seed, dtype=args.dtype, hidden=args.hidden,
        steps=args.steps or 10_000, linear_steps=args.linear_steps,
        step_size=args.step_size, reg=args.reg, activation=args.activation or "relu",
        dropout=args.dropout, train_net=train_net)
    if plot is not None:
        os.makedirs(args.plot, exist_ok=True)
        for result, fname in ((linear, "spiral_linear.png"), (net, "spiral_net.png")):
            path = os.path.join(args.plot, fname)
            plot.decision_boundary(result.net, X, y, path,
                                   title=f"{result.name}: {result.accuracy:.0%} train")
            print(f"wrote {path}")
    return 0


def _search(args):
    import numpy as np
    from . import datasets, search
    plot = None
    if args.plot is not None:
        plot = _require_plot("--plot")
        _check_output_dir(args.plot, "--plot")
    X, y = datasets.spiral(100, 3, seed=np.random.RandomState(args.seed))
    result = search.compare_strategies(X, y, args.budget, args.seed, scale=args.scale,
                                       step=args.step, step_size=args.step_size,
                                       reg=args.reg, dtype=args.dtype)
    print(f"== spiral ({X.shape[0]} points), linear softmax classifier, reg {args.reg:g}, "
          f"{args.dtype}")
    print(result.format())
    print("== one gradient step from the start, by step size")
    print(result.sweep.format())
    if plot is not None:
        os.makedirs(args.plot, exist_ok=True)
        path = os.path.join(args.plot, "search.png")
        plot.search_curves(result, path)
        print(f"wrote {path}")
    return 0


def _save_api():
    """fastnn.save, or a UsageError when this fastnn has none (checked before training)."""
    import fastnn
    save = getattr(fastnn, "save", None)
    if save is None:
        raise UsageError("this fastnn cannot save models (fastnn.save is missing)")
    return save


def _json_number(x):
    return None if x is None or not math.isfinite(x) else float(x)


def _train(args):
    import numpy as np
    from . import optim
    from .net import MLP
    from .trainer import Trainer
    data = read_training_data(args.data)
    X, y = data.X, data.y
    n = X.shape[0]
    classes = np.unique(y)
    if len(classes) < 2:
        raise UsageError(f"{args.data}: y has a single class ({classes[0].item()!r}); a "
                         "classifier needs at least 2")
    n_val = int(round(args.validation_split * n))
    if args.validation_split and not 0 < n_val < n:
        raise UsageError(f"--validation-split {args.validation_split:g} of {n} rows leaves "
                         "no rows for training or for validation")
    n_train = n - n_val
    batch = args.batch_size if args.batch_size is not None else min(32, n_train)
    if batch > n_train:
        raise UsageError(f"--batch-size {batch} is larger than the {n_train} training rows")
    output = (args.output if args.output is not None
              else os.path.basename(os.path.splitext(args.data)[0]) + MODEL_SUFFIX)
    _check_output_file(output, "--output", inputs=(args.data,))
    save = _save_api()
    epochs = args.epochs or 100
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else None)
    _set_threads(args.threads)
    try:
        net = MLP([X.shape[1], *args.hidden, len(classes)], activation=args.activation,
                  dropout=args.dropout, seed=args.seed, dtype=args.dtype)
        optimizer = optim.get(args.optimizer, **({} if lr is None else {"lr": lr}))
        trainer = Trainer(net, optimizer=optimizer, batch_size=batch,
                          reg=args.reg or None, seed=args.seed,
                          verbose=0 if args.quiet else 1)
    except (ValueError, TypeError) as exc:
        raise UsageError(_one_line(exc)) from None
    if not args.quiet:
        print(f"training {net.sizes} {args.activation} net on {n_train} rows "
              f"({n_val} for validation), {len(classes)} classes: {optimizer!r}, "
              f"batches of {batch}, {epochs} epochs")
    history = _fit(trainer, X, y, args.prog, epochs=epochs,
                   validation_split=args.validation_split)
    metric = history.metric[-1] if len(history) else math.nan
    val_metric = history.val_metric[-1] if len(history) else math.nan
    name = history.metric_name
    line = f"training {name} {metric:.4f}"
    if args.validation_split:
        line += f", validation {name} {val_metric:.4f}"
    print(f"{line} after {trainer.epoch} epochs ({float(np.sum(history.seconds)):.3g} s)")
    metadata = {
        "classes": trainer.classes_.tolist(),
        "n_features": int(X.shape[1]),
        "feature_names": data.feature_names,
        "label_name": data.label_name,
        "hidden": list(args.hidden),
        "activation": args.activation,
        "dropout": args.dropout,
        "optimizer": args.optimizer,
        "lr": float(optimizer.lr),
        "batch_size": batch,
        "epochs": trainer.epoch,
        "reg": args.reg,
        "validation_split": args.validation_split,
        "seed": args.seed,
        "dtype": args.dtype,
        "data": os.path.basename(args.data),
        "training_" + name: _json_number(metric),
        "validation_" + name: _json_number(val_metric),
    }
    try:
        save(net, output, metadata=metadata)
    except OSError as exc:
        print(f"{args.prog}: error: cannot write {output}: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


def load_model(path):
    """(net, metadata dict) of a model file; UsageError when it cannot be read."""
    import inspect
    import fastnn
    load = getattr(fastnn, "load", None)
    if load is None:
        raise UsageError("this fastnn cannot load models (fastnn.load is missing)")
    try:
        if "with_metadata" in inspect.signature(load).parameters:
            net, metadata = load(path, with_metadata=True)
        else:
            net = load(path)
            io = getattr(fastnn, "io", None)
            reader = (getattr(io, "read_metadata", None) or getattr(io, "load_metadata", None))
            metadata = reader(path) if reader is not None else {}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's error
        raise UsageError(f"MODEL {path}: cannot load it: {_one_line(exc)}") from None
    if not isinstance(metadata, dict):
        metadata = {}
    return net, metadata


def decode_predictions(scores, classes):
    """Labels from scores: the argmax over the first len(classes) columns mapped to
    classes (as Trainer.predict does); class indices when classes is None."""
    import numpy as np
    if classes is None:
        return np.argmax(scores, axis=1)
    classes = np.asarray(classes)
    return classes[np.argmax(scores[:, :len(classes)], axis=1)]


def _write_predictions(path, labels):
    import numpy as np
    if _suffix(path) == ".csv":
        import csv
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["prediction"])
            w.writerows([label] for label in labels.tolist())
    else:
        with open(path, "wb") as f:
            np.save(f, labels, allow_pickle=False)


def _predict(args):
    import numpy as np
    _check_input_file(args.model, "MODEL")
    _check_input_file(args.data, "DATA")
    if args.output is not None:
        _check_output_file(args.output, "--output", inputs=(args.model, args.data))
    net, metadata = load_model(args.model)
    n_features = getattr(net, "n_features", None)
    if n_features is None:
        raise UsageError(f"MODEL {args.model}: its first layer does not say how many "
                         "features it takes")
    data = read_prediction_data(args.data, n_features)
    classes = metadata.get("classes")
    scores = net.predict_scores(data.X)
    if classes is not None and (not isinstance(classes, list) or not classes
                                or len(classes) > scores.shape[1]):
        raise UsageError(f"MODEL {args.model}: its metadata's classes do not fit its "
                         f"{scores.shape[1]} outputs")
    labels = decode_predictions(scores, classes)
    if args.output is not None:
        try:
            _write_predictions(args.output, labels)
        except OSError as exc:
            print(f"{args.prog}: error: cannot write {args.output}: {_one_line(exc)}",
                  file=sys.stderr)
            return 1
        report = sys.stdout
        print(f"wrote {len(labels)} predictions to {args.output}")
    else:
        report = sys.stderr
        sys.stdout.write("".join(f"{label}\n" for label in labels.tolist()))
    if data.y is not None:
        # as values where both are numbers (a model trained on float labels predicts
        # "1.0" for the CSV's "1"), else as text
        ours, theirs = (parse_labels(np.asarray(v).astype(str).tolist())
                        for v in (labels, data.y))
        same = (ours == theirs if ours.dtype.kind in "if" and theirs.dtype.kind in "if"
                else labels.astype(str) == np.asarray(data.y).astype(str))
        accuracy = float(np.mean(same))
        print(f"accuracy {accuracy:.4f} against the {len(labels)} labels in {args.data}",
              file=report)
    return 0


def _export(args):
    import json
    _check_input_file(args.model, "MODEL")
    _check_output_file(args.output, "OUT", inputs=(args.model,))
    try:
        from .export import to_onnx
        import onnx  # noqa: F401 - the error is the user's to fix, so a usage error
    except ImportError:
        raise UsageError("exporting needs the onnx package: pip install "
                         "'fastnn[onnx]'") from None
    net, metadata = load_model(args.model)
    props = {}
    if metadata.get("classes") is not None:
        props["classes"] = json.dumps(metadata["classes"])
    try:
        model = to_onnx(net, args.output, fold_batchnorm=not args.no_fold_batchnorm,
                        probabilities=args.probabilities, label=args.label,
                        metadata=props)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"MODEL {args.model}: {_one_line(exc)}") from None
    except OSError as exc:
        print(f"{args.prog}: error: cannot write {args.output}: {_one_line(exc)}",
              file=sys.stderr)
        return 1
    outputs = ", ".join(o.name for o in model.graph.output)
    print(f"wrote {args.output}: ONNX opset {model.opset_import[0].version}, input X, "
          f"outputs {outputs}, {net.dtype.name}")
    return 0


def _config(args):
    from .config import show_config
    show_config()
    return 0


def _check_environment():
    """A bad FASTNN_NUM_THREADS as a usage error (every command, config included)."""
    from .config import refresh
    try:
        refresh()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def main(argv=None):
    """Run the ``fastnn`` command with argv (default sys.argv[1:]); returns the exit code
    (argparse's own errors exit with status 2 from here)."""
    args = build_parser().parse_args(argv)
    command = {"spiral": _spiral, "train": _train, "predict": _predict,
               "export": _export, "search": _search, "config": _config}[args.command]
    try:
        _check_environment()
        return command(args)
    except UsageError as exc:
        print(f"{args.prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
