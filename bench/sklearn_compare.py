"""fastnn.sklearn's estimators beside scikit-learn's, on the same data and settings.

    python bench/sklearn_compare.py [--quick] [--only NAME[,NAME...]] [--threads N]
                                    [--seeds K] [--json PATH]

NAME: digits (MLPClassifier, scikit-learn's bundled 8x8 digits), diabetes (MLPRegressor,
scikit-learn's bundled diabetes), spiral (MLPClassifier, fastnn.datasets.spiral).  Each
case fits both libraries with identical parameters for K random_states (default 7), in
alternating order, timing every fit; it prints the median fit time of each, the ratio
(scikit-learn / fastnn: above 1, fastnn is faster) and the test scores (accuracy or R^2,
in points = 100 x, averaged over the seeds), and checks the aims: fit >= 10x faster, test
score within 0.5 points.

The training sets are sized so that batch_size divides them: scikit-learn also takes a
short last batch each epoch, fastnn's compiled plan does not (see fastnn.sklearn), and
with whole batches both take the same number of steps per epoch.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import cases  # noqa: E402,F401  (puts this checkout's built fastnn first, like the other scripts)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, train_size=1400, random_state=0,
                                          stratify=y)
    return Xtr, ytr, Xte, yte


def _diabetes():
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    X, y = load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=352, random_state=0)
    mx, sx = Xtr.mean(0), Xtr.std(0)
    my, sy = ytr.mean(), ytr.std()
    return (Xtr - mx) / sx, (ytr - my) / sy, (Xte - mx) / sx, (yte - my) / sy


def _spiral():
    from fastnn.datasets import spiral
    Xtr, ytr = spiral(100, 3, seed=0)
    Xte, yte = spiral(100, 3, seed=1)
    return Xtr, ytr, Xte, yte


#: name -> (data, estimator kind, parameters given to both libraries)
CASES = {
    "digits": (_digits, "classifier",
               dict(hidden_layer_sizes=(100,), batch_size=200, max_iter=200)),
    "diabetes": (_diabetes, "regressor",
                 dict(hidden_layer_sizes=(100,), batch_size=32, alpha=10.0, max_iter=200)),
    "spiral": (_spiral, "classifier",
               dict(hidden_layer_sizes=(100,), batch_size=60, learning_rate_init=0.01,
                    alpha=1e-3, max_iter=300)),
}


def gemm_floor(sizes, batch, reps=200):
    """Seconds of the matrix products alone in one training step of an MLP with these
    layer widths (forward x @ W, backward h.T @ d and d @ W.T but for the first
    layer's), float64, numpy's BLAS with out=: what no implementation can go below."""
    rng = np.random.default_rng(0)
    hs = [rng.standard_normal((batch, n)) for n in sizes]
    Ws = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    dWs = [np.empty_like(W) for W in Ws]
    dhs = [np.empty_like(h) for h in hs]

    def step():
        for i, W in enumerate(Ws):
            np.matmul(hs[i], W, out=hs[i + 1])
        for i in range(len(Ws) - 1, -1, -1):
            np.matmul(hs[i].T, hs[i + 1], out=dWs[i])
            if i:
                np.matmul(hs[i + 1], Ws[i].T, out=dhs[i])
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed per case")
    ap.add_argument("--only", metavar="NAME", help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for fastnn and every BLAS (default 1)")
    # the epochs a fit runs before scikit-learn's stopping rule fires differ by seed
    # (70-100 on diabetes, for either library): 7 seeds keep the medians' ratio near
    # the per-epoch one
    ap.add_argument("--seeds", type=int, default=7, help="random_states per case")
    ap.add_argument("--json", metavar="PATH", help="write the raw results here")
    return ap.parse_args(argv)


def run_case(name, seeds, threads):
    from sklearn import neural_network as sknn

    import fastnn.sklearn as fsk
    make, kind, params = CASES[name]
    Xtr, ytr, Xte, yte = make()
    ours_cls = fsk.MLPClassifier if kind == "classifier" else fsk.MLPRegressor
    theirs_cls = sknn.MLPClassifier if kind == "classifier" else sknn.MLPRegressor
    rows = {"fastnn": {"seconds": [], "score": [], "n_iter": []},
            "scikit-learn": {"seconds": [], "score": [], "n_iter": []}}
    for i, seed in enumerate(range(seeds)):
        order = [("fastnn", ours_cls, {"n_threads": threads}), ("scikit-learn", theirs_cls, {})]
        if i % 2:
            order.reverse()
        for label, cls, extra in order:
            est = cls(random_state=seed, **params, **extra)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")       # ConvergenceWarning, both
                t0 = time.perf_counter()
                est.fit(Xtr, ytr)
                seconds = time.perf_counter() - t0
            rows[label]["seconds"].append(seconds)
            rows[label]["score"].append(100.0 * est.score(Xte, yte))
            rows[label]["n_iter"].append(est.n_iter_)
    n_out = 1 if kind == "regressor" else len(np.unique(ytr))     # 1-D targets here
    sizes = [Xtr.shape[1], *params["hidden_layer_sizes"], n_out]
    steps = statistics.median(rows["fastnn"]["n_iter"]) * (len(Xtr) // params["batch_size"])
    floor = steps * gemm_floor(sizes, params["batch_size"])
    return {"case": name, "kind": kind, "params": params, "n_train": len(Xtr),
            "n_test": len(Xte), "rows": rows, "gemm_floor_seconds": floor}


def report(res):
    f, s = res["rows"]["fastnn"], res["rows"]["scikit-learn"]
    tf, ts = statistics.median(f["seconds"]), statistics.median(s["seconds"])
    sf, ss = float(np.mean(f["score"])), float(np.mean(s["score"]))
    what = "accuracy" if res["kind"] == "classifier" else "R^2"
    print(f"\n{res['case']}: {res['n_train']} train / {res['n_test']} test rows, "
          f"{res['params']}")
    print(f"   {'':14s} {'fit s (median)':>15s} {'epochs':>8s} {'test ' + what:>14s}")
    for label, r in (("fastnn", f), ("scikit-learn", s)):
        print(f"   {label:14s} {statistics.median(r['seconds']):15.3f} "
              f"{statistics.median(r['n_iter']):8.0f} {np.mean(r['score']):14.2f}")
    ratio, gap = ts / tf, sf - ss
    ok = ratio >= 10 and abs(gap) <= 0.5
    floor = res["gemm_floor_seconds"]
    print(f"   the GEMMs alone of fastnn's steps take {floor:.3f} s: fastnn / floor "
          f"{tf / floor:.2f}, scikit-learn / floor {ts / floor:.2f}")
    per_epoch = (ts / statistics.median(s["n_iter"])) / (tf / statistics.median(f["n_iter"]))
    res["ratio_per_epoch"] = per_epoch
    print(f"   scikit-learn / fastnn fit time: {ratio:.1f}x ({per_epoch:.1f}x per epoch); "
          f"score difference {gap:+.2f} "
          f"points  -> aim (>= 10x, |diff| <= 0.5): {'met' if ok else 'NOT met'}")
    res.update(ratio=ratio, score_gap=gap, aim_met=ok)
    return res


def main(argv=None):
    args = parse_args(argv)
    names = list(CASES) if not args.only else [w.strip() for w in args.only.split(",")]
    for n in names:
        if n not in CASES:
            sys.exit(f"unknown case {n!r}; choose from {', '.join(CASES)}")
    seeds = 1 if args.quick else args.seeds
    from threadpoolctl import threadpool_limits

    import fastnn
    import sklearn
    print(f"fastnn {fastnn.__version__} from {Path(fastnn.__file__).parent}, scikit-learn "
          f"{sklearn.__version__}, numpy {np.__version__}; threads {args.threads} "
          f"(fastnn and every BLAS); {seeds} seed(s) per case; cpus "
          f"{len(os.sched_getaffinity(0))}")
    results = []
    with threadpool_limits(args.threads):
        for n in names:
            results.append(report(run_case(n, seeds, args.threads)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
