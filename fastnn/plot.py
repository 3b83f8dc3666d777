"""Pictures (needs the ``plot`` extra: ``pip install fastnn[plot]``)."""
import numpy as np


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'fastnn[plot]'") from None
    return plt


def decision_boundary(net, X, y, path=None, *, title=None, resolution=0.02):
    """Colour the plane by net.predict and scatter the 2-D data on top.

    Saves a PNG to ``path`` when given; returns the matplotlib Figure."""
    plt = _pyplot()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2) to draw a plane, got {X.shape}")
    x0, x1 = X[:, 0].min() - 0.5, X[:, 0].max() + 0.5
    y0, y1 = X[:, 1].min() - 0.5, X[:, 1].max() + 0.5
    xx, yy = np.meshgrid(np.arange(x0, x1, resolution), np.arange(y0, y1, resolution))
    grid = np.c_[xx.ravel(), yy.ravel()]
    zz = net.predict(grid).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contourf(xx, yy, zz, cmap=plt.cm.Spectral, alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=30, cmap=plt.cm.Spectral, edgecolors="k",
               linewidths=0.4)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if title:
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return fig
