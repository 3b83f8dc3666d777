"""The compiled numerical gradient of a whole net and the loss landscape, timed.

    python bench/gradcheck_speed.py [--quick] [--json PATH]

1. spiral: the full numerical gradient (603 parameters, centered, h = 1e-5, float64) of
   the case study's 2-layer net after 200 training steps, by
   fastnn.gradcheck.net_numerical_gradient at 1 and 2 threads, beside the notes' loop
   (their eval_numerical_gradient with centered differences, over the notes' NumPy
   forward pass and loss), interleaved rounds, medians of the time per call (calls
   repeated back to back within a round of ~20 ms); ratio = notes / fastnn.
2. 784-256-10 (ReLU, softmax, 64 rows of random data, float64; 203,530 parameters):
   the compiled gradient on a sample of elements of each parameter array (its cost per
   element depends only on the layer), at 1 and 2 threads, extrapolated to the whole
   gradient.  (The notes' loop would take ~2 full forward passes per element.)
3. landscape: a 101 x 101 plane of the spiral net's loss (fastnn.landscape.loss_plane,
   10,201 evaluations), 1 and 2 threads.

Absolute times on a shared 2-core machine swing by 1.4x or more; compare the ratios
measured in the same run.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cases  # noqa: E402
from fastnn import case_study  # noqa: E402
from fastnn.evaluate import build_evaluator  # noqa: E402
from fastnn.gradcheck import _net_numerical, net_numerical_gradient  # noqa: E402
from fastnn.landscape import loss_plane  # noqa: E402
from fastnn.losses import SoftmaxCrossEntropy  # noqa: E402
from fastnn.net import MLP  # noqa: E402
from fastnn.trainer import gradient_descent  # noqa: E402


def _median_times(fns, reps, round_s=0.02):
    """Median seconds per call of each fn, rounds interleaved.  In a round each fn runs
    back to back enough times to last about round_s (once if one call does; the count is
    set from a first call), as timeit's autorange does: a lone millisecond call on this
    shared VM also pays for waking an idle core (measured: the 2-thread spiral gradient
    took 1.4 ms called back to back but 2.6 ms after 80 ms of sleep), which is not the
    cost of the computation."""
    number = {}
    for k, fn in fns.items():
        t = time.perf_counter()
        fn()
        number[k] = max(1, int(round_s / max(time.perf_counter() - t, 1e-9)))
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(number[k]):
                fn()
            times[k].append((time.perf_counter() - t) / number[k])
    return {k: statistics.median(v) for k, v in times.items()}


def spiral(reps):
    X, y, init = cases.spiral_problem(np.float64)
    net = case_study.two_layer_net(2, 100, 3, seed=0)
    for (_, _, p, _), v in zip(net.parameters(), init):
        p[...] = v
    loss = SoftmaxCrossEntropy()
    gradient_descent(net, loss, X, y, steps=200, step_size=cases.STEP_SIZE, reg=cases.REG)
    W, b, W2, b2 = [p.copy() for _, _, p, _ in net.parameters()]
    n = X.shape[0]

    def f(_):        # the notes' forward pass and data loss
        hidden = np.maximum(0, np.dot(X, W) + b)
        scores = np.dot(hidden, W2) + b2
        e = np.exp(scores)
        probs = e / np.sum(e, axis=1, keepdims=True)
        return np.sum(-np.log(probs[range(n), y])) / n

    def notes():
        return [cases.eval_numerical_gradient_centered(f, p) for p in (W, b, W2, b2)]

    ev = build_evaluator(net, loss, X, y)

    def fast(nt):
        return lambda: _net_numerical(ev, None, 1e-5, "centered", None, nt)[0]
    ours = fast(1)()
    theirs = np.concatenate([g.ravel() for g in notes()])
    err = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    t = _median_times({"notes": notes, "fastnn_1": fast(1), "fastnn_2": fast(2)}, reps)
    return {"notes_ms": t["notes"] * 1e3, "fastnn_1t_ms": t["fastnn_1"] * 1e3,
            "fastnn_2t_ms": t["fastnn_2"] * 1e3,
            "ratio_1t": t["notes"] / t["fastnn_1"], "ratio_2t": t["notes"] / t["fastnn_2"],
            "max_diff_vs_notes": err}


def mlp(reps, sample=128):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 784)), rng.integers(0, 10, 64)
    net = MLP([784, 256, 10], seed=0)
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y)
    out = {"n_params": ev.n_params}
    for nt in (1, 2):
        total, per = 0.0, {}
        for i, layer in enumerate(net.layers):
            for name, p in layer.params.items():
                start = int(p.__array_interface__["data"][0]
                            - net.flat_params.__array_interface__["data"][0]) // 8
                k = min(sample, p.size)
                idx = start + rng.choice(p.size, k, replace=False)
                secs = _median_times({"x": lambda: _net_numerical(
                    ev, None, 1e-5, "centered", idx, nt)}, reps)["x"]
                per[f"{i}.{name}"] = secs / k * 1e6
                total += secs / k * p.size
        out[f"{nt}t_us_per_element"] = per
        out[f"{nt}t_full_s"] = total
    return out


def landscape(reps):
    X, y, init = cases.spiral_problem(np.float64)
    net = case_study.two_layer_net(2, 100, 3, seed=0)
    loss = SoftmaxCrossEntropy()
    t = _median_times({nt: (lambda nt=nt: loss_plane(net, loss, X, y, alphas=101, seed=0,
                                                      n_threads=nt)) for nt in (1, 2)}, reps)
    return {"plane_101x101_1t_s": t[1], "plane_101x101_2t_s": t[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    reps = 3 if args.quick else 9
    res = {"spiral": spiral(reps), "mlp_784_256_10": mlp(max(1, reps // 3)),
           "landscape": landscape(max(1, reps // 3))}
    s = res["spiral"]
    print("1. spiral net, full numerical gradient (603 params, centered, float64)")
    print(f"   notes' centered NumPy loop   {s['notes_ms']:9.2f} ms")
    print(f"   fastnn compiled, 1 thread    {s['fastnn_1t_ms']:9.2f} ms   "
          f"{s['ratio_1t']:6.1f}x")
    print(f"   fastnn compiled, 2 threads   {s['fastnn_2t_ms']:9.2f} ms   "
          f"{s['ratio_2t']:6.1f}x   (max |diff| / max |grad| vs notes: "
          f"{s['max_diff_vs_notes']:.1e})")
    m = res["mlp_784_256_10"]
    print(f"2. 784-256-10 ReLU net, 64 rows ({m['n_params']} params), per element / "
          "extrapolated full gradient")
    for nt in (1, 2):
        per = ", ".join(f"{k} {v:.1f} us" for k, v in m[f"{nt}t_us_per_element"].items())
        print(f"   {nt} thread{'s' if nt > 1 else ' '}: {per}; full {m[f'{nt}t_full_s']:.1f} s")
    ls = res["landscape"]
    print(f"3. 101x101 loss plane of the spiral net: {ls['plane_101x101_1t_s']:.3f} s "
          f"(1 thread), {ls['plane_101x101_2t_s']:.3f} s (2 threads)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
