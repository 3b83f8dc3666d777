"""The fastnn command: train and predict on users' files (CSV with or without a header,
string labels, npz), the spiral's trainer options, --version, and for every bad option,
path or data file one line on stderr and exit status 2, found before training starts.

The case study's own CLI checks (its log, its plots, matplotlib missing) live in
test_case_study.py.  Model files go through fastnn.save/fastnn.load."""
import csv
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli, optim
from fastnn.net import MLP
from fastnn.trainer import Trainer



@pytest.fixture
def model_io():
    """(save, load) the CLI uses."""
    return fastnn.save, fastnn.load


# ---- data ------------------------------------------------------------------------------------

def _blobs(n_per_class=15, seed=0):
    """Three well separated 3-D blobs: X (45, 3), y 0..2."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0, 0], [-2.0, 1, 0], [0, -2.0, 1]])
    y = np.repeat(np.arange(3), n_per_class)
    X = centres[y] + 0.4 * rng.standard_normal((3 * n_per_class, 3))
    order = rng.permutation(len(y))
    return X[order], y[order]


def _write_csv(path, X, labels, header=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        for row, label in zip(X, labels):
            w.writerow([repr(float(v)) for v in row] + [label])
    return str(path)


def _read_predictions_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction"]
    return [r[0] for r in rows[1:]]


def _trainer_like_the_cli(X, y, *, hidden, seed, lr, batch_size, epochs, optimizer="adam",
                          activation="relu", validation_split=0.0):
    """What `fastnn train` does, written out with the library."""
    net = MLP([X.shape[1], *hidden, len(np.unique(y))], activation=activation, seed=seed)
    tr = Trainer(net, optimizer=optim.get(optimizer, lr=lr), batch_size=batch_size,
                 seed=seed, verbose=0)
    tr.fit(X, y, epochs=epochs, validation_split=validation_split)
    return tr


def _main(argv):
    """cli.main's exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


# ---- train, then predict ---------------------------------------------------------------------

def test_csv_with_header_and_string_labels_round_trip(model_io, tmp_path, capsys):
    X, y = _blobs()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    data = _write_csv(tmp_path / "iris.csv", X, names, header=["len", "wid", "h", "species"])
    model = tmp_path / "m.fastnn.safetensors"
    assert _main(["train", data, "--hidden", "8,4", "--epochs", "5", "--batch-size", "16",
                  "--seed", "3", "--lr", "0.01", "--output", model]) == 0
    out = capsys.readouterr().out
    assert "training accuracy" in out and f"wrote {model}" in out
    assert "validation" not in out.splitlines()[-2]
    net, meta = model_io[1](str(model), with_metadata=True)
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["feature_names"] == ["len", "wid", "h"] and meta["label_name"] == "species"
    assert meta["hidden"] == [8, 4] and meta["n_features"] == 3
    assert net.n_features == 3

    want = _trainer_like_the_cli(X, names, hidden=[8, 4], seed=3, lr=0.01, batch_size=16,
                                 epochs=5).predict(X)
    pred = tmp_path / "pred.csv"
    assert _main(["predict", model, data, "--output", pred]) == 0
    out = capsys.readouterr().out
    assert f"wrote 45 predictions to {pred}" in out and "accuracy" in out
    assert _read_predictions_csv(pred) == want.tolist()
    # the same file without its label column, predictions on stdout
    features = _write_csv(tmp_path / "features.csv", X, [""] * len(X))
    with open(features) as f:
        lines = [line.rstrip(",\n") for line in f]
    with open(features, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert _main(["predict", model, features]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == want.tolist()
    assert captured.err == ""


def test_csv_without_header_int_labels_and_npy_predictions(model_io, tmp_path, capsys):
    X, y = _blobs(seed=1)
    labels = np.array([10, 20, 30])[y]
    data = _write_csv(tmp_path / "d.csv", X, labels)
    model = tmp_path / "d.model"
    assert _main(["train", data, "--hidden", "6", "--epochs", "4", "--batch-size", "9",
                  "--optimizer", "momentum", "--lr", "0.05", "--activation", "tanh",
                  "--seed", "1", "-q", "-o", model]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("training accuracy")   # -q: no per-epoch lines
    pred = tmp_path / "p.npy"
    assert _main(["predict", model, data, "-o", pred]) == 0
    got = np.load(pred, allow_pickle=False)
    want = _trainer_like_the_cli(X, labels, hidden=[6], seed=1, lr=0.05, batch_size=9,
                                 epochs=4, optimizer="momentum", activation="tanh").predict(X)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    meta = model_io[1](str(model), with_metadata=True)[1]
    assert meta["classes"] == [10, 20, 30] and meta["feature_names"] is None


def test_npz_with_validation_split_round_trip(model_io, tmp_path, capsys, monkeypatch):
    X, y = _blobs(seed=2)
    labels = np.array(["a", "b", "c"])[y]
    (tmp_path / "in").mkdir()
    data = tmp_path / "in" / "blobs.npz"
    np.savez(data, X=X, y=labels)
    monkeypatch.chdir(tmp_path)
    assert _main(["train", data, "--hidden", "5", "--epochs", "6", "--batch-size", "8",
                  "--validation-split", "0.2", "--lr", "0.02", "--dtype", "float32",
                  "--dropout", "0.9", "-q"]) == 0
    out = capsys.readouterr().out
    assert "training accuracy" in out and "validation accuracy" in out
    model = tmp_path / "blobs.fastnn.safetensors"              # DATA's stem, here
    assert "wrote blobs.fastnn.safetensors" in out and model.exists()
    net, meta = model_io[1](str(model), with_metadata=True)
    assert net.dtype == np.float32 and meta["validation_split"] == 0.2
    assert 0 <= meta["validation_accuracy"] <= 1

    net2 = MLP([3, 5, 3], dropout=0.9, seed=0, dtype=np.float32)
    tr = Trainer(net2, optimizer=optim.get("adam", lr=0.02), batch_size=8, seed=0, verbose=0)
    tr.fit(X, labels, epochs=6, validation_split=0.2)
    np.testing.assert_array_equal(net.flat_params, net2.flat_params)
    assert _main(["predict", model, data, "-o", "p.csv"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert _read_predictions_csv(tmp_path / "p.csv") == tr.predict(X).tolist()
    # .npy holding X alone
    np.save(tmp_path / "X.npy", X)
    assert _main(["predict", model, tmp_path / "X.npy"]) == 0
    assert capsys.readouterr().out.split() == tr.predict(X).tolist()


def test_defaults_and_a_linear_classifier(model_io, tmp_path, capsys):
    X, y = _blobs(n_per_class=20)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert _main(["train", tmp_path / "d.npz", "--hidden", "", "--epochs", "2", "-q",
                  "-o", tmp_path / "m"]) == 0
    net, meta = model_io[1](str(tmp_path / "m"), with_metadata=True)
    assert meta["hidden"] == [] and net.sizes == [3, 3]
    assert meta["batch_size"] == 32 and meta["optimizer"] == "adam"
    assert meta["lr"] == 1e-3 and meta["epochs"] == 2 and meta["dtype"] == "float64"


def test_diverging_training_warns_in_one_line(model_io, tmp_path, capsys):
    X, y = _blobs()
    data = tmp_path / "d.npz"
    np.savez(data, X=X * 1e3, y=y)
    assert _main(["train", data, "--optimizer", "sgd", "--lr", "1e6", "--epochs", "30",
                  "-q", "-o", tmp_path / "m"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fastnn train: warning: the loss became non-finite")


def test_csv_header_detection_and_label_parsing(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("1.5,2,class\n0.1,0.2,0\n0.3,0.4,1\n")      # only the label is a name
    d = cli.read_training_data(str(p))
    assert d.feature_names == ["1.5", "2"] and d.label_name == "class"
    np.testing.assert_array_equal(d.y, [0, 1])
    p.write_text("0.1,0.2,cat\n0.3,0.4,dog\n\n")                # string labels, no header
    d = cli.read_training_data(str(p))
    assert d.feature_names is None and d.y.tolist() == ["cat", "dog"]
    assert d.X.shape == (2, 2)
    p.write_text("x,2019\n0.1,0.2\n0.3,0.4\n")       # a column named by a number
    d = cli.read_prediction_data(str(p), 2)
    assert d.feature_names == ["x", "2019"] and d.X.shape == (2, 2)
    assert cli.parse_labels(["1", "2.0", "-3"]).dtype == np.int64
    assert cli.parse_labels(["0.5", "1"]).tolist() == [0.5, 1.0]
    assert cli.parse_labels(["1", "nan"]).tolist() == ["1", "nan"]


def test_predict_compares_labels_as_numbers_where_both_are(model_io, tmp_path, capsys):
    """A model trained on float labels (npz) predicts "1.0"; the CSV says "1"."""
    X, y = _blobs(seed=2)
    np.savez(tmp_path / "d.npz", X=X, y=y.astype(np.float64))
    data_csv = _write_csv(tmp_path / "d.csv", X, y)
    model = tmp_path / "m"
    assert _main(["train", tmp_path / "d.npz", "--hidden", "8", "--epochs", "60", "--lr", "0.05",
                  "--seed", "0", "-q", "-o", model]) == 0
    accuracies = []
    for data in (tmp_path / "d.npz", data_csv):
        capsys.readouterr()
        assert _main(["predict", model, data, "-o", tmp_path / "p.csv"]) == 0
        line = capsys.readouterr().out.splitlines()[-1]
        accuracies.append(float(line.split()[1]))
    assert accuracies[0] == accuracies[1] > 0.9


def test_a_bad_thread_variable_is_said_not_a_crash(tmp_path):
    """FASTNN_NUM_THREADS=abc: fastnn imports (with a warning), training refuses by
    name, the command says so in one line with status 2."""
    env = dict(os.environ, FASTNN_NUM_THREADS="abc")
    code = ("import warnings, fastnn\n"
            "from fastnn.net import MLP\nfrom fastnn.trainer import Trainer\n"
            "from fastnn.datasets import spiral\nX, y = spiral(10, 3)\n"
            "try:\n    Trainer(MLP([2, 5, 3]), verbose=0).fit(X, y, epochs=1)\n"
            "except ValueError as exc:\n    print('refused:', exc)\n")
    # (run from elsewhere: from the checkout's root `-c` would import its unbuilt source)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "refused: FASTNN_NUM_THREADS must be an integer >= 1, got 'abc'" in r.stdout
    assert "RuntimeWarning: FASTNN_NUM_THREADS" in r.stderr
    r = subprocess.run([sys.executable, "-c", "from fastnn.cli import main; "
                        "raise SystemExit(main(['config']))"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1] == ("fastnn config: error: FASTNN_NUM_THREADS must be "
                                         "an integer >= 1, got 'abc'")


def test_version(capsys):
    assert _main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastnn {fastnn.__version__}"


def test_train_says_so_when_fastnn_save_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.delattr(fastnn, "save", raising=False)
    monkeypatch.setattr(Trainer, "fit", _no_training)
    X, y = _blobs()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert _main(["train", tmp_path / "d.npz", "-o", tmp_path / "m"]) == 2
    assert "fastnn.save is missing" in capsys.readouterr().err


# ---- the spiral's trainer options ------------------------------------------------------------

def _final_lines(out):
    return [line.split(";")[:2] for line in out.splitlines() if line.startswith("final loss")]


def test_spiral_optimizer_sgd_is_the_case_study_through_a_trainer(capsys):
    short = ["spiral", "--steps", "300", "--linear-steps", "20", "--hidden", "20"]
    assert _main(short) == 0
    notes = capsys.readouterr().out
    assert _main(short + ["--optimizer", "sgd"]) == 0
    trainer = capsys.readouterr().out
    assert "Trainer" in trainer and "Trainer" not in notes
    assert _final_lines(trainer) == _final_lines(notes)     # same bits, same loss


def test_spiral_trainer_options(tmp_path, capsys):
    assert _main(["spiral", "--linear-steps", "10", "--hidden", "20", "--optimizer", "adam",
                  "--lr", "0.02", "--batch-size", "50", "--epochs", "20", "--dropout", "0.9",
                  "--activation", "tanh", "--dtype", "float32", "--plot", tmp_path]) == 0
    out = capsys.readouterr().out
    assert ("== 2-layer tanh net (h = 20, dropout keeping 0.9): Trainer, Adam(lr=0.02"
            in out)
    assert "batches of 50, 20 epochs" in out and "float32" in out
    assert out.count("training accuracy") == 2
    assert (tmp_path / "spiral_net.png").read_bytes()[:4] == b"\x89PNG"


# ---- bad uses: one line on stderr, exit 2, before any training --------------------------------

def _no_training(*args, **kwargs):
    raise AssertionError("training started")


@pytest.fixture
def no_training(monkeypatch):
    """Training of any kind fails the test: every error must come before it."""
    from fastnn import case_study
    monkeypatch.setattr(Trainer, "fit", _no_training)
    monkeypatch.setattr(case_study, "run", _no_training)


@pytest.fixture
def files(tmp_path):
    """Named paths of good and bad files for the error cases."""
    X, y = _blobs()
    f = {"tmp": tmp_path, "dir": tmp_path / "adir"}
    f["dir"].mkdir()
    f["good.npz"] = tmp_path / "good.npz"
    np.savez(f["good.npz"], X=X, y=y)
    f["good.csv"] = _write_csv(tmp_path / "good.csv", X, y)
    f["a file"] = tmp_path / "plain.txt"
    f["a file"].write_text("x")
    writes = {
        "empty.csv": "", "ragged.csv": "1,2,0\n3,0\n", "word.csv": "1,2,0\n3,abc,1\n",
        "nan.csv": "1,2,0\n3,nan,1\n", "one-col.csv": "1\n2\n", "one-class.csv":
        "1,2,a\n3,4,a\n", "no-label.csv": "1,2,\n3,4,1\n", "header-only.csv": "a,b,c\n",
        "wide.csv": "1,2,3,4,5\n", "gap-first.csv": "1,,0\n3,4,1\n",
        "na-first.csv": "1,NA,0\n3,4,1\n",
        "corrupt.npz": "not a zip", "model.bad": "garbage",
    }
    for name, text in writes.items():
        f[name] = tmp_path / name
        f[name].write_text(text)
    arrays = {
        "no-y.npz": {"X": X}, "1d-X.npz": {"X": X[:, 0], "y": y},
        "2d-y.npz": {"X": X, "y": y[:, None]}, "short-y.npz": {"X": X, "y": y[:-1]},
        "text-X.npz": {"X": X.astype(str), "y": y}, "object-y.npz": {
            "X": X, "y": np.array([{"a": 1}] * len(y), dtype=object)},
        "inf-X.npz": {"X": np.where(X > 2.5, np.inf, X), "y": y},
        "complex-X.npz": {"X": X + 1j, "y": y},
    }
    for name, arr in arrays.items():
        f[name] = tmp_path / name
        np.savez(f[name], **arr)
    f["model"] = tmp_path / "model.fastnn"
    fastnn.save(MLP([3, 4, 3], seed=0), f["model"], metadata={"classes": [0, 1, 2]})
    return f


BAD = [
    # argv (names in braces are files from the fixture), words the message must hold
    (["spiral", "--steps", "abc"], "argument --steps: expected an integer >= 1, got 'abc'"),
    (["spiral", "--steps", "0"], "--steps: expected an integer >= 1, got 0"),
    (["spiral", "--threads", "1000000"], "--threads: n = 1000000 threads is more than"),
    (["train", "{good.npz}", "--threads", "1000000"], "--threads: n = 1000000 threads"),
    (["train", "{gap-first.csv}"], "line 1, column 2: '' is not a number"),
    (["train", "{na-first.csv}"], "line 1, column 2: 'NA' is not a number"),
    (["spiral", "--step-size", "nan"], "--step-size: expected a finite number, got 'nan'"),
    (["spiral", "--step-size", "inf"], "finite"),
    (["spiral", "--step-size", "-1"], "--step-size: must be > 0, got -1"),
    (["spiral", "--reg", "-1"], "--reg: must be >= 0"),
    (["spiral", "--reg", "nan"], "--reg: expected a finite number"),
    (["spiral", "--seed", "-1"], "--seed: expected an integer in [0, 4294967295], got -1"),
    (["spiral", "--seed", str(2**32)], "--seed: expected an integer in"),
    (["spiral", "--seed", "1.5"], "--seed: expected an integer"),
    (["spiral", "--threads", "0"], "--threads"),
    (["spiral", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["spiral", "--plot", "/proc/x"], "--plot: cannot write in /proc"),
    (["spiral", "--plot", "{a file}"], "exists and is not a directory"),
    (["spiral", "--plot", "{a file}/sub"], "is not a directory"),
    (["spiral", "--lr", "0"], "--lr: must be > 0"),
    (["spiral", "--lr", "nan"], "--lr: expected a finite number"),
    (["spiral", "--dropout", "0"], "--dropout: must be > 0 and <= 1"),
    (["spiral", "--dropout", "1.5"], "--dropout: must be > 0 and <= 1"),
    (["spiral", "--batch-size", "301"], "larger than the 300 rows"),
    (["spiral", "--steps", "5", "--epochs", "5"], "--steps or --epochs, not both"),
    (["spiral", "--epochs", "-2"], "--epochs: expected an integer >= 1"),
    (["spiral", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["spiral", "--activation", "gelu"], "invalid choice: 'gelu'"),
    (["spiral", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["train"], "required: DATA"),
    (["train", "{tmp}/missing.csv"], "missing.csv: no such file"),
    (["train", "{dir}"], "not a file"),
    (["train", "{a file}"], "expected a .npz or .csv file"),
    (["train", "{empty.csv}"], "no rows"),
    (["train", "{ragged.csv}"], "line 2 has 2 fields, line 1 has 3"),
    (["train", "{word.csv}"], "line 2, column 2: 'abc' is not a number"),
    (["train", "{nan.csv}"], "line 2, column 2: 'nan' is not a finite number"),
    (["train", "{one-col.csv}"], "needs at least 2 comma-separated columns"),
    (["train", "{one-class.csv}"], "single class ('a')"),
    (["train", "{no-label.csv}"], "line 1: the label is empty"),
    (["train", "{header-only.csv}"], "a header and no data rows"),
    (["train", "{corrupt.npz}"], "cannot read it as .npz"),
    (["train", "{no-y.npz}"], "needs arrays X and y; it holds X"),
    (["train", "{1d-X.npz}"], "X must be 2-D"),
    (["train", "{2d-y.npz}"], "y must be 1-D"),
    (["train", "{short-y.npz}"], "y has 44 labels but X has 45 rows"),
    (["train", "{text-X.npz}"], "X must hold real numbers"),
    (["train", "{complex-X.npz}"], "X must hold real numbers"),
    (["train", "{object-y.npz}"], "object arrays"),
    (["train", "{inf-X.npz}"], "is inf; every value must be finite"),
    (["train", "{good.npz}", "--hidden", "0"], "--hidden: expected comma-separated"),
    (["train", "{good.npz}", "--hidden", "10,x"], "--hidden: expected comma-separated"),
    (["train", "{good.npz}", "--validation-split", "1"], "--validation-split: must be >= 0 "
                                                         "and < 1"),
    (["train", "{good.npz}", "--validation-split", "-0.1"], "--validation-split: must be"),
    (["train", "{good.npz}", "--validation-split", "0.001"], "leaves no rows for training "
                                                            "or for validation"),
    (["train", "{good.npz}", "--batch-size", "46"], "larger than the 45 training rows"),
    (["train", "{good.npz}", "--validation-split", "0.5", "--batch-size", "30"],
     "larger than the 23 training rows"),
    (["train", "{good.npz}", "--epochs", "0"], "--epochs: expected an integer >= 1"),
    (["train", "{good.npz}", "--lr", "-1"], "--lr: must be > 0"),
    (["train", "{good.npz}", "--seed", "-1"], "--seed: expected an integer in"),
    (["train", "{good.npz}", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["train", "{good.npz}", "-o", "{tmp}/nodir/m"], "directory {tmp}/nodir does not exist"),
    (["train", "{good.npz}", "-o", "{dir}"], "is a directory"),
    (["train", "{good.npz}", "-o", "/proc/m"], "--output: cannot write in /proc"),
    (["train", "{good.npz}", "-o", "{good.npz}"], "is an input file"),
    (["train", "{good.csv}", "-o", ""], "--output: empty path"),
    (["predict", "{tmp}/nomodel", "{good.npz}"], "MODEL {tmp}/nomodel: no such file"),
    (["predict", "{model}", "{tmp}/nodata.csv"], "DATA {tmp}/nodata.csv: no such file"),
    (["predict", "{model}", "{good.npz}", "-o", "{tmp}/nodir/p.csv"], "does not exist"),
    (["predict", "{model}", "{good.npz}", "-o", "{model}"], "is an input file"),
    (["predict", "{model.bad}", "{good.npz}"], "cannot load it"),
    (["predict", "{model}", "{ragged.csv}"], "line 2 has 2 fields, line 1 has 3"),
    (["predict", "{model}", "{wide.csv}"], "has 5 columns; the model takes 3 features"),
    (["predict", "{model}", "{one-col.csv}"], "has 1 columns; the model takes 3 features"),
    (["predict", "{model}", "{a file}"], "expected a .npz, .npy or .csv file"),
    (["predict", "{model}", "{1d-X.npz}"], "X must be 2-D"),
]


def _fill(text, files):
    for key, value in files.items():
        text = text.replace("{" + key + "}", str(value))
    return text


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) or "(none)" for a, _ in BAD])
def test_bad_use_is_one_line_and_exit_2(argv, message, files, no_training, capsys):
    if argv[-1:] == ["/proc/x"] and not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    status = _main([_fill(a, files) for a in argv])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert re.match(r"fastnn( spiral| train| predict)?: error: ", err), err
    assert _fill(message, files) in err
    assert "Traceback" not in err and "_positive_int" not in err and "_int_type" not in err


def test_bad_use_through_the_installed_command(tmp_path):
    """The console script: no traceback reaches the terminal, exit status 2."""
    exe = shutil.which("fastnn", path=os.path.dirname(sys.executable)) or shutil.which("fastnn")
    if exe is None:
        pytest.skip("the fastnn entry point is not installed")
    for argv, message in [
        (["spiral", "--plot", "/proc/x", "--steps", "1"], "--plot: cannot write in /proc"),
        (["spiral", "--steps", "abc"], "--steps: expected an integer >= 1, got 'abc'"),
        (["train", str(tmp_path / "missing.npz")], "no such file"),
    ]:
        r = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"fastnn {fastnn.__version__}"
