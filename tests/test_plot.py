"""fastnn.plot: decision regions and training curves, drawn to PNG and checked for what
they show (axes, lines, labels), and the matplotlib backend left as the user set it."""
import os
import struct
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fastnn import optim, plot  # noqa: E402
from fastnn.datasets import spiral  # noqa: E402
from fastnn.net import MLP  # noqa: E402
from fastnn.trainer import Trainer  # noqa: E402

X, Y = spiral(30, 3, seed=0)
NAMES = np.array(["ant", "bee", "cat"])


def _trainer(sizes=(2, 16, 3), activation="relu", **fit):
    tr = Trainer(MLP(list(sizes), activation=activation, seed=0), optimizer=optim.Adam(lr=2e-2),
                 batch_size=30, seed=0, verbose=0, **fit.pop("trainer_kw", {}))
    tr.fit(X, NAMES[Y], epochs=fit.pop("epochs", 20), record_every=1, **fit)
    return tr


def _png_size(path):
    """(width, height) of a PNG file, after checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert 2_000 < len(data) < 2_000_000
    return struct.unpack(">II", data[16:24])


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_decision_regions_of_a_trainer_with_string_labels(tmp_path):
    tr = _trainer()
    path = tmp_path / "regions.png"
    fig = plot.decision_regions(tr, X, NAMES[Y], path, title="spiral", resolution=60)
    w, h = _png_size(path)
    assert 200 < w < 1000 and 200 < h < 1000
    (ax,) = fig.axes
    assert ax.get_title() == "spiral"
    assert _legend(ax) == ["ant", "bee", "cat"]
    points = [c for c in ax.collections if c.get_offsets().shape[0] > 0 and
              c.get_label() in NAMES]
    assert [c.get_label() for c in points] == ["ant", "bee", "cat"]
    assert sum(len(c.get_offsets()) for c in points) == len(X)
    # each class one colour, distinct, and the regions use the same three colours
    colours = [tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in points]
    assert len(set(colours)) == 3
    # the plane spans the data plus 5% each side
    lo, hi = X.min(axis=0), X.max(axis=0)
    assert ax.get_xlim() == pytest.approx((lo[0] - 0.05 * (hi[0] - lo[0]),
                                           hi[0] + 0.05 * (hi[0] - lo[0])))


def test_decision_regions_colours_follow_the_classes_not_the_order_seen(tmp_path):
    """A class keeps its colour whatever subset of the data is drawn."""
    tr = _trainer()
    only_cat = Y == 2
    full = plot.decision_regions(tr, X, NAMES[Y], resolution=20)
    part = plot.decision_regions(tr, X[only_cat], NAMES[Y][only_cat], resolution=20)

    def colour(fig, name):
        (c,) = [c for c in fig.axes[0].collections if c.get_label() == name]
        return tuple(c.get_facecolor()[0])
    assert colour(full, "cat") == colour(part, "cat")
    assert _legend(part.axes[0]) == ["cat"]
    import matplotlib.pyplot as plt
    # without a path the figures are pyplot's (a notebook shows them), never shown here
    assert plt.fignum_exists(full.number) and plt.fignum_exists(part.number)
    plt.close(full)
    plt.close(part)


def test_decision_regions_of_a_net_and_the_case_study_boundary(tmp_path):
    net = MLP([2, 8, 3], seed=1)
    fig = plot.decision_regions(net, X, Y, tmp_path / "net.png", resolution=30)
    _png_size(tmp_path / "net.png")
    assert _legend(fig.axes[0]) == ["0", "1", "2"]
    fig = plot.decision_boundary(net, X, Y, tmp_path / "b.png", title="t")
    _png_size(tmp_path / "b.png")
    (ax,) = fig.axes
    assert ax.get_legend() is None and ax.get_title() == "t"
    assert ax.get_xlim() == pytest.approx((X[:, 0].min() - 0.5, X[:, 0].max() + 0.5),
                                          abs=0.02)


def test_decision_regions_rejects_bad_input():
    net = MLP([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot.decision_regions(net, np.zeros((5, 3)), np.zeros(5, int), resolution=10)
    with pytest.raises(ValueError, match="one label per row"):
        plot.decision_regions(net, X, Y[:-1], resolution=10)
    with pytest.raises(ValueError, match="resolution"):
        plot.decision_regions(net, X, Y, resolution=1)
    # decision_boundary's step: 2 to 5000 points per axis, any real type
    for step in (2.9, 1e-4):
        with pytest.raises(ValueError, match=f"resolution {step!r} gives"):
            plot.decision_boundary(net, X, Y, resolution=step)
    for step in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="resolution must be a positive step"):
            plot.decision_boundary(net, X, Y, resolution=step)
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.close(plot.decision_boundary(net, X, Y, resolution=np.float32(0.1)))
    tr = _trainer(epochs=1)
    with pytest.raises(ValueError, match="'dog', not one of the model's classes"):
        plot.decision_regions(tr, X, np.where(Y == 0, "dog", NAMES[Y]), resolution=10)


def test_history_curves_with_validation_and_penalty(tmp_path):
    tr = _trainer(validation_split=0.2, trainer_kw={"reg": 1e-3})
    path = tmp_path / "curves.png"
    fig = plot.history_curves(tr.history_, path)
    w, h = _png_size(path)
    assert h > w                                  # three rows of subplots
    ax_loss, ax_metric, ax_lr = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert ax_lr.get_xlabel() == "epoch"
    assert _legend(ax_loss) == ["training", "training (data loss)", "validation"]
    assert _legend(ax_metric) == ["training", "validation"]
    assert len(ax_lr.get_lines()) == 1
    for ax in (ax_metric, ax_lr):
        assert ax.get_shared_x_axes().joined(ax_loss, ax)
    epochs = tr.history_.epochs
    for line in ax_loss.get_lines() + ax_metric.get_lines():
        np.testing.assert_array_equal(line.get_xdata(), epochs)
    np.testing.assert_allclose(ax_loss.get_lines()[2].get_ydata(), tr.history_.val_loss)
    np.testing.assert_allclose(ax_lr.get_lines()[0].get_ydata(), 2e-2)


def test_history_curves_without_validation_and_from_a_trainer(tmp_path):
    tr = _trainer()
    fig = plot.history_curves(tr, tmp_path / "c.png")          # a Trainer gives its history
    _png_size(tmp_path / "c.png")
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1, 1]
    assert _legend(fig.axes[0]) == ["training"]


def test_dead_units_one_line_per_hidden_layer(tmp_path):
    tr = _trainer(sizes=(2, 16, 8, 3))
    fig = plot.dead_units(tr.history_, tmp_path / "dead.png")
    _png_size(tmp_path / "dead.png")
    (ax,) = fig.axes
    assert _legend(ax) == ["hidden layer 1", "hidden layer 2"]
    dead = np.asarray(tr.history_.dead_units)
    for j, line in enumerate(ax.get_lines()):
        np.testing.assert_allclose(line.get_ydata(), dead[:, j])
    assert ax.get_ylim()[0] < 0 < 1 < ax.get_ylim()[1]
    with pytest.raises(ValueError, match="no ReLU"):
        plot.dead_units(_trainer(activation="tanh", epochs=2).history_)


def test_curves_need_a_history_with_records():
    from fastnn.history import History
    with pytest.raises(ValueError, match="no records"):
        plot.history_curves(History())
    with pytest.raises(TypeError, match="History"):
        plot.dead_units([1, 2, 3])


def _run(code):
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    # cwd outside the repository: the child imports the package under test, not the
    # unbuilt source tree
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, env=env, timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


SETUP = """
    import sys
    import numpy as np
    from fastnn import plot
    from fastnn.history import History
    h = History()
    for e in range(3):
        h._append(e, loss=1.0 / (e + 1), metric=0.5, lr=0.1, dead_units=[0.1])
"""


def test_plotting_to_a_file_leaves_the_backend_alone(tmp_path):
    """No backend chosen: writing PNGs neither picks one nor imports pyplot."""
    out = _run(SETUP + f"""
    import matplotlib
    plot.history_curves(h, {str(tmp_path / 'a.png')!r})
    plot.dead_units(h, {str(tmp_path / 'b.png')!r})
    print("pyplot" if "matplotlib.pyplot" in sys.modules else "no pyplot")
    print(matplotlib.rcParams._get_backend_or_none())
    """)
    assert out.splitlines() == ["no pyplot", "None"]
    _png_size(tmp_path / "a.png")


def test_a_backend_the_user_chose_is_kept(tmp_path):
    out = _run(SETUP + f"""
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    plot.history_curves(h, {str(tmp_path / 'a.png')!r})
    fig = plot.history_curves(h)
    print(matplotlib.get_backend(), plt.fignum_exists(fig.number))
    """)
    assert out.split() == ["svg", "True"]
    _png_size(tmp_path / "a.png")


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    from fastnn.history import History
    h = History()
    h._append(0, loss=1.0, metric=0.5, lr=0.1)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for draw in (lambda: plot.history_curves(h, "x.png"), lambda: plot.history_curves(h),
                 lambda: plot.decision_regions(MLP([2, 3], seed=0), X, Y)):
        with pytest.raises(ImportError, match=r"pip install 'fastnn\[plot\]'"):
            draw()


def test_preprocessing_views_the_notes_four_panels(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((300, 2)) @ np.array([[2.0, 1.2], [0.0, 0.5]]) + [4, -3]
    path = tmp_path / "prep.png"
    fig = plot.preprocessing_views(data, path)
    w, h = _png_size(path)
    assert w > 2.5 * h                                # four panels in a row
    assert [ax.get_title() for ax in fig.axes] == ["original", "centered",
                                                   "decorrelated (PCA)", "whitened"]
    pts = [ax.collections[0].get_offsets() for ax in fig.axes]
    assert all(p.shape == (300, 2) for p in pts)
    np.testing.assert_allclose(pts[0], data)
    np.testing.assert_allclose(np.asarray(pts[1]).mean(axis=0), 0, atol=1e-12)
    cov = lambda p: np.cov(np.asarray(p).T, bias=True)  # noqa: E731
    rot = cov(pts[2])
    assert abs(rot[0, 1]) < 1e-10 * rot[0, 0] and rot[0, 0] > rot[1, 1]   # decorrelated
    np.testing.assert_allclose(cov(pts[3]), np.eye(2), atol=1e-4)           # whitened
    # one pair of limits for all four panels, so the shifts and stretching show
    assert len({ax.get_xlim() for ax in fig.axes}) == 1
    fig = plot.preprocessing_views(data, same_scale=False)
    import matplotlib.pyplot as plt
    plt.close(fig)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot.preprocessing_views(np.ones((10, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        plot.preprocessing_views(np.ones((1, 2)))
    with pytest.raises(ValueError, match="eps"):
        plot.preprocessing_views(data, eps=-1.0)


def test_search_curves_of_a_comparison(tmp_path):
    from fastnn import search
    c = search.compare_strategies(X, Y, budget=60, seed=0)
    path = tmp_path / "search.png"
    fig = plot.search_curves(c, path)
    w, h = _png_size(path)
    assert w > h > 200
    ax, ax2 = fig.axes
    names = [line.get_label().split(" (")[0] for line in ax.get_lines()]
    assert names == ["random search", "random local search", "gradient descent"]
    for line, r in zip(ax.get_lines(), c.results.values()):
        np.testing.assert_array_equal(line.get_ydata(), r.curve)
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 61))
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "loss evaluations"
    assert ax2.get_xscale() == "log" and ax2.get_xlabel() == "step size"
    sweep_line, start_line = ax2.get_lines()
    np.testing.assert_array_equal(sweep_line.get_xdata(), c.sweep.step_sizes)
    assert start_line.get_ydata()[0] == c.sweep.start_loss
    # the curves alone, from a list of results: one panel
    one = plot.search_curves(list(c.results.values()), sweep=False, log_x=False)
    (ax,) = one.axes
    assert len(ax.get_lines()) == 3 and ax.get_xscale() == "linear"
    with pytest.raises(TypeError, match="comparison"):
        plot.search_curves({})
    with pytest.raises(TypeError, match="SearchResult"):
        plot.search_curves({"x": 1.0})
    with pytest.raises(TypeError, match="sweep"):
        plot.search_curves(c, sweep=3)
