"""Pictures (needs the ``plot`` extra: ``pip install 'fastnn[plot]'``).

Every function returns a matplotlib Figure and, given ``path``, also writes it there as
a PNG.  matplotlib is imported on first use, never when fastnn is imported.

The backend is left alone.  Without ``path`` the figure is made by pyplot, so it shows
in a notebook or in the backend the user chose (nothing here calls ``plt.show``).  With
``path`` the figure is made without pyplot, on its own Agg canvas: writing a file needs
no display, changes no process-wide setting (``matplotlib.use`` is never called) and
leaves no figure open in pyplot.  The returned Figure still displays in a notebook.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import os
    from types import ModuleType

    from .history import History
    from .landscape import Landscape
    from .search import Comparison, SearchResult, SweepResult
    from .trainer import Trainer

_INSTALL = "plotting needs matplotlib: pip install 'fastnn[plot]'"


def require() -> ModuleType:
    """Import matplotlib (only the package, not pyplot); an ImportError that says how to
    install it when it is missing.  Returns the matplotlib module."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(_INSTALL) from None
    return matplotlib


def _pyplot():
    """matplotlib.pyplot, with the install hint when matplotlib is missing."""
    require()
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(_INSTALL) from None
    return plt


def _figure(path, nrows=1, ncols=1, **kwargs):
    """(fig, axes): through pyplot when the figure is for the screen (path None), else
    a pyplot-free Figure on an Agg canvas (see the module docstring)."""
    if path is None:
        return _pyplot().subplots(nrows, ncols, **kwargs)
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _label(ax, xlabel, ylabel, title=None):
    """Axis labels, an optional title, the legend and the light grid every plot here uses."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return fig


def _cmap(name):
    import matplotlib
    return matplotlib.colormaps[name]


# ---- decision regions ----------------------------------------------------------------------

def _check_plane(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2) to draw a plane, got {X.shape}")
    if X.dtype.kind not in "fiu" or X.shape[0] == 0:
        raise ValueError("X must be a non-empty array of real numbers")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity")
    return X


def _class_list(model, y, predicted):
    """The classes in colour order: the Trainer's classes_ when it has them, else every
    label seen in y or predicted, sorted."""
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return np.asarray(classes)
    return np.unique(np.concatenate([np.asarray(y).ravel(), np.asarray(predicted).ravel()]))


def _codes(labels, classes, what):
    labels = np.asarray(labels).ravel()
    codes = np.minimum(np.searchsorted(classes, labels), len(classes) - 1)
    bad = classes[codes] != labels
    if np.any(bad):
        raise ValueError(f"{what} holds label {labels[np.argmax(bad)].item()!r}, not one of "
                         f"the model's classes {classes[:10].tolist()}")
    return codes


def _regions(model, X, y, path, title, xs, ys, legend):
    require()
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got "
                         f"shape {y.shape}")
    xx, yy = np.meshgrid(xs, ys)
    predicted = np.asarray(model.predict(np.c_[xx.ravel(), yy.ravel()]))
    classes = _class_list(model, y, predicted)
    zz = _codes(predicted, classes, "the model's prediction").reshape(xx.shape)
    yc = _codes(y, classes, "y")
    k = len(classes)
    # one fixed colour per class, the same in the regions and the points
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap(_cmap("Spectral")(np.linspace(0, 1, max(k, 2)))[:k])
    fig, ax = _figure(path, figsize=(5, 5))
    ax.contourf(xx, yy, zz, levels=np.arange(k + 1) - 0.5, cmap=cmap, vmin=-0.5,
                vmax=k - 0.5, alpha=0.8)
    for j, label in enumerate(classes):
        rows = yc == j
        if np.any(rows):
            ax.scatter(X[rows, 0], X[rows, 1], color=cmap(j), s=30, edgecolors="k",
                       linewidths=0.4, label=str(label))
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    if legend:
        ax.legend(loc="best", fontsize="small", framealpha=0.8)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def decision_regions(model: Any, X: ArrayLike, y: ArrayLike,
                     path: str | os.PathLike[str] | None = None, *, title: str | None = None,
                     resolution: int = 300) -> Any:
    """Colour the plane by the model's predicted class and scatter the 2-D data on top.

    model : anything with ``predict`` on (M, 2) rows: a fastnn net (class indices) or a
        Trainer (labels of the kind it was fitted on: strings, ints, ...).  Colours
        follow the Trainer's ``classes_``, else the sorted labels of y and the
        predictions, so a class has the same colour in the regions and the points.
    X : (N, 2) data; y : (N,) their labels, of the kind predict returns.
    resolution : grid points per axis (the plane spans the data plus 5% each side).

    Returns the Figure (written to ``path`` as a PNG when given)."""
    X = _check_plane(X)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or not 2 <= resolution <= 5000:
        raise ValueError(f"resolution must be an int in [2, 5000], got {resolution!r}")
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    return _regions(model, X, y, path, title, xs, ys, legend=True)


def decision_boundary(net: Any, X: ArrayLike, y: ArrayLike,
                      path: str | os.PathLike[str] | None = None, *, title: str | None = None,
                      resolution: float = 0.02) -> Any:
    """The spiral case study's picture: like :func:`decision_regions` on a grid of step
    ``resolution`` (in data units) over the data plus 0.5 each side, without a legend.
    The step must give 2 to 5000 grid points along each axis (ValueError otherwise).

    Saves a PNG to ``path`` when given; returns the matplotlib Figure."""
    X = _check_plane(X)
    if (isinstance(resolution, bool) or not isinstance(resolution, numbers.Real)
            or not np.isfinite(resolution) or not resolution > 0):
        raise ValueError(f"resolution must be a positive step, got {resolution!r}")
    x0, x1 = X[:, 0].min() - 0.5, X[:, 0].max() + 0.5
    y0, y1 = X[:, 1].min() - 0.5, X[:, 1].max() + 0.5
    points = [int(np.ceil((hi - lo) / float(resolution))) for lo, hi in ((x0, x1), (y0, y1))]
    if not all(2 <= p <= 5000 for p in points):
        raise ValueError(f"resolution {resolution!r} gives {points[0]} x {points[1]} grid "
                         "points; it must give 2 to 5000 along each axis")
    return _regions(net, X, y, path, title, np.arange(x0, x1, float(resolution)),
                    np.arange(y0, y1, float(resolution)), legend=False)


# ---- training curves -----------------------------------------------------------------------

def _history(history):
    """A History from a History or a fitted Trainer; ValueError when it is empty."""
    h = getattr(history, "history_", history)
    if h is None or not hasattr(h, "epochs") or not hasattr(h, "loss"):
        raise TypeError(f"expected a fastnn History (or a fitted Trainer), got "
                        f"{type(history).__name__}")
    if len(h.epochs) == 0:
        raise ValueError("the history has no records (no epoch completed)")
    return h


def _has(values):
    values = np.asarray(values, dtype=np.float64)
    return bool(np.any(np.isfinite(values)))


def history_curves(history: History | Trainer,
                   path: str | os.PathLike[str] | None = None) -> Any:
    """Training curves on three subplots sharing the epoch axis: the loss (training and,
    when recorded, validation; the training data loss too when a penalty was added),
    the metric (training and validation) and the learning rate.

    history : a History (or a fitted Trainer).  Returns the Figure (written to ``path``
    as a PNG when given)."""
    h = _history(history)
    epochs = np.asarray(h.epochs)
    fig, (ax_loss, ax_metric, ax_lr) = _figure(path, 3, 1, sharex=True, figsize=(6, 8))
    ax_loss.plot(epochs, h.loss, label="training")
    if np.any(np.asarray(h.reg_loss, dtype=np.float64) > 0):
        ax_loss.plot(epochs, h.data_loss, "--", label="training (data loss)")
    if _has(h.val_loss):
        ax_loss.plot(epochs, h.val_loss, label="validation")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="best", fontsize="small")
    name = h.metric_name
    ax_metric.plot(epochs, h.metric, label="training")
    if _has(h.val_metric):
        ax_metric.plot(epochs, h.val_metric, label="validation")
    ax_metric.set_ylabel(name)
    ax_metric.legend(loc="best", fontsize="small")
    lr = np.asarray(h.lr, dtype=np.float64)
    ax_lr.plot(epochs, lr)
    ok = lr[np.isfinite(lr)]
    if ok.size and np.all(ok > 0) and ok.max() > 10 * ok.min():
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(True, alpha=0.3)
    return _finish(fig, path)


def dead_units(history: History | Trainer,
               path: str | os.PathLike[str] | None = None) -> Any:
    """The fraction of dead units (no positive output on any training row checked) of
    every hidden ReLU-family layer, epoch by epoch: one line per layer.

    history : a History (or a fitted Trainer).  Returns the Figure (written to ``path``
    as a PNG when given).  ValueError when the net has no ReLU-family hidden layer."""
    h = _history(history)
    width = max(len(row) for row in h.dead_units)
    if width == 0:
        raise ValueError("the history records no dead units: the net has no ReLU or "
                         "leaky ReLU hidden layer")
    fractions = np.full((len(h.dead_units), width), np.nan)
    for i, row in enumerate(h.dead_units):
        fractions[i, :len(row)] = row
    fig, ax = _figure(path, figsize=(6, 4))
    epochs = np.asarray(h.epochs)
    for j in range(width):
        ax.plot(epochs, fractions[:, j], label=f"hidden layer {j + 1}")
    ax.set_ylim(-0.02, 1.02)
    _label(ax, "epoch", "dead units (fraction)")
    return _finish(fig, path)


# ---- preprocessing -------------------------------------------------------------------------

def preprocessing_views(X: ArrayLike, path: str | os.PathLike[str] | None = None, *,
                        eps: float = 1e-5, same_scale: bool = True) -> Any:
    """The notes' preprocessing pictures for 2-D data, side by side: the original data,
    centered (mean subtracted), decorrelated (PCA: rotated into the covariance
    eigenbasis) and whitened (each component divided by sqrt(eigenvalue + eps)).

    X : (N, 2) data, N >= 2.  eps : the whitening constant.
    same_scale : all four panels share one pair of axis limits (default), so the
        shifts and the stretching show; False gives each panel its own limits.

    Every panel has equal x and y units and the axes through 0.  The statistics come
    from X itself (:class:`fastnn.preprocessing.PCA`).  Returns the Figure (written to
    ``path`` as a PNG when given)."""
    from .preprocessing import PCA
    X = _check_plane(X)
    if X.shape[0] < 2:
        raise ValueError(f"X must have at least 2 rows to have a covariance, got {X.shape[0]}")
    pca = PCA(eps=eps).fit(X)
    views = [("original", X), ("centered", X - pca.mean_),
             ("decorrelated (PCA)", pca.transform(X)),
             ("whitened", PCA(whiten=True, eps=eps).fit(X).transform(X))]
    fig, axes = _figure(path, 1, 4, figsize=(16, 4.4))
    if same_scale:
        everything = np.concatenate([v for _, v in views] + [np.zeros((1, 2))])
        lo, hi = everything.min(axis=0), everything.max(axis=0)
        half = 0.55 * max(float(np.max(hi - lo)), 1e-12)
        mid = (lo + hi) / 2
    for ax, (title, V) in zip(axes, views):
        ax.scatter(V[:, 0], V[:, 1], s=8, alpha=0.6, color="tab:blue", edgecolors="none")
        ax.axhline(0, color="0.5", linewidth=0.8)
        ax.axvline(0, color="0.5", linewidth=0.8)
        if same_scale:
            ax.set_xlim(mid[0] - half, mid[0] + half)
            ax.set_ylim(mid[1] - half, mid[1] + half)
        ax.set_aspect("equal", adjustable="datalim" if not same_scale else "box")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    return _finish(fig, path)


def loss_landscape(landscape: Landscape, path: str | os.PathLike[str] | None = None, *,
                   title: str | None = None, log: bool = False,
                   levels: int | ArrayLike = 12) -> Any:
    """A loss slice from fastnn.landscape: a line for a 1-D slice (loss_line), a heat
    map with contour lines for a 2-D one (loss_plane), the current weights (offset 0)
    marked.

    landscape : a fastnn.landscape.Landscape.  log : plot log10 of the loss (slices
    often span decades).  levels : the number of contour lines (2-D).  Returns the
    Figure (written to ``path`` as a PNG when given)."""
    from .landscape import Landscape
    if not isinstance(landscape, Landscape):
        raise TypeError("landscape must be a fastnn.landscape.Landscape, got "
                        f"{type(landscape).__name__}")
    L = np.asarray(landscape.losses, dtype=np.float64)
    values = np.log10(np.maximum(L, 1e-300)) if log else L
    label = "log10 loss" if log else "loss"
    fig, ax = _figure(path, figsize=(6.4, 4.8) if L.ndim == 1 else (6.4, 5.4))
    if L.ndim == 1:
        ax.plot(landscape.alphas, values, color="tab:blue")
        ax.axvline(0, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_xlabel("a  (W + a W1)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    else:
        a, b = landscape.alphas, landscape.betas
        mesh = ax.pcolormesh(a, b, values, shading="auto", cmap=_cmap("viridis"))
        if min(values.shape) > 1 and np.ptp(values) > 0:
            ax.contour(a, b, values, levels=levels, colors="white", linewidths=0.6)
        fig.colorbar(mesh, ax=ax, label=label)
        ax.plot([0], [0], marker="+", color="red", markersize=12)
        ax.set_xlabel("a  (W + a W1 + b W2)")
        ax.set_ylabel("b")
    ax.set_title(title or ("loss along a ray" if L.ndim == 1 else "loss over a plane"))
    return _finish(fig, path)


# ---- search strategies ---------------------------------------------------------------------

def search_curves(comparison: (Comparison | dict[str, SearchResult] | list[SearchResult]
                                | tuple[SearchResult, ...]),
                  path: str | os.PathLike[str] | None = None, *,
                  sweep: SweepResult | Literal[False] | None = None,
                  log_x: bool = True) -> Any:
    """The notes' optimization strategies side by side: the best loss so far against
    the number of loss evaluations, one line per strategy (random search, random local
    search, gradient descent...), and, when there is a step-size sweep, a second panel
    of the loss after one gradient step against the step size (log x), with the
    starting loss dashed.

    comparison : a :class:`fastnn.search.Comparison` (its ``sweep`` is drawn too), or a
        dict name -> :class:`fastnn.search.SearchResult` (or a list of results, named by
        their ``method``)
    sweep : a :class:`fastnn.search.SweepResult` to draw instead of (or without) the
        comparison's; ``False`` draws none
    log_x : the evaluations axis in log scale (default), where the three differ most

    Returns the Figure (written to ``path`` as a PNG when given)."""
    results = getattr(comparison, "results", comparison)
    if sweep is None:
        sweep = getattr(comparison, "sweep", None)
    if isinstance(results, (list, tuple)):
        results = {getattr(r, "method", str(i)): r for i, r in enumerate(results)}
    if not isinstance(results, dict) or not results:
        raise TypeError("comparison must be a fastnn.search.Comparison, or a non-empty "
                        f"dict or list of SearchResults, got {type(comparison).__name__}")
    curves = {}
    for name, r in results.items():
        if not hasattr(r, "curve"):
            raise TypeError(f"comparison[{name!r}] is a {type(r).__name__}, not a "
                            "fastnn.search.SearchResult")
        curves[name] = np.asarray(r.curve, dtype=np.float64)
    if sweep is not False and sweep is not None and not hasattr(sweep, "step_sizes"):
        raise TypeError(f"sweep must be a fastnn.search.SweepResult, got "
                        f"{type(sweep).__name__}")
    show_sweep = sweep is not None and sweep is not False
    fig, axes = _figure(path, 1, 2 if show_sweep else 1,
                        figsize=(11, 4.2) if show_sweep else (6, 4.2))
    ax = axes[0] if show_sweep else axes
    for name, curve in curves.items():
        ax.plot(np.arange(1, curve.size + 1), curve, label=f"{name} ({curve[-1]:.4f})")
    if log_x:
        ax.set_xscale("log")
    _label(ax, "loss evaluations", "best loss so far", "same budget of loss evaluations")
    if show_sweep:
        # show_sweep means sweep is a SweepResult: mypy does not narrow through the flag
        ax2 = axes[1]
        s = np.asarray(sweep.step_sizes, dtype=np.float64)  # type: ignore[union-attr]
        v = np.asarray(sweep.losses, dtype=np.float64)  # type: ignore[union-attr]
        pos = s > 0
        ax2.plot(s[pos], v[pos], "o-", label="loss after one step")
        ax2.axhline(sweep.start_loss,  # type: ignore[union-attr]
                    color="0.4", linestyle="--", linewidth=1,
                    label=f"original loss ({sweep.start_loss:.3f})")  # type: ignore[union-attr]
        ax2.set_xscale("log")
        finite = v[pos & np.isfinite(v)]
        if finite.size and np.all(finite > 0) and finite.max() > 10 * finite.min():
            ax2.set_yscale("log")
        _label(ax2, "step size", "loss", "w - step size * gradient")
    return _finish(fig, path)
