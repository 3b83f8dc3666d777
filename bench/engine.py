"""The training engine (fastnn.plan) side by side with its peers, as ratios.

    python bench/engine.py [--quick] [--only NAME[,NAME...]] [--threads N] [--json PATH]

NAME: engine-spiral, engine-minibatch, engine-mlp, engine-adam, engine-threads (or a
case's full key, e.g. engine-spiral-f64).  The cases are in engine_cases.py; timing,
checks and tables are compare.py's: each implementation is checked once against a
reference, then all are timed in interleaved rounds.  At the end the aims are checked
against the ratios of medians (and of minima, which other load inflates least).
JAX (pip install jax jaxlib) and torch are optional: their rows are skipped, with a
note, when they are not installed.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _worker_main(argv):
    """``engine.py --worker [--torch-first] --threads N``: serve engine_cases candidates
    over stdin/stdout (see engine_cases.Worker).  --torch-first imports torch before
    anything imports fastnn."""
    if "--torch-first" in argv:
        import torch  # noqa: F401  (the point: torch's libgomp is loaded first)
    threads = int(argv[argv.index("--threads") + 1])
    import cases
    import engine_cases
    cases.set_threads(threads)
    out = sys.stdout
    sys.stdout = sys.stderr          # nothing but replies on the pipe
    engine_cases.serve(sys.stdin, out)


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker_main(sys.argv)
    sys.exit(0)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cases  # noqa: E402
import compare  # noqa: E402
import engine_cases  # noqa: E402

ENV_NOTES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
             "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND", "GOMP_SPINCOUNT",
             "FASTNN_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (about 1 min)")
    ap.add_argument("--only", metavar="NAME",
                    help="comma-separated: " + ", ".join(engine_cases.GROUPS))
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for fastnn, every BLAS and torch (default: the cores "
                         "this process may use); JAX picks its own")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per case")
    ap.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                    help="untimed sleep after each timed call (default 0.1, 0.05 with "
                         "--quick; see compare.py)")
    ap.add_argument("--json", metavar="PATH", help="write the raw results here")
    return ap.parse_args(argv)


def select(only):
    if not only:
        return engine_cases.all_engine_cases()
    chosen = []
    for w in (w.strip() for w in only.split(",") if w.strip()):
        if w in engine_cases.GROUPS:
            chosen += engine_cases.GROUPS[w]()
            continue
        group = next((g for g in engine_cases.GROUPS if w.startswith(g)), None)
        hit = [c for c in engine_cases.GROUPS[group]() if c.key == w] if group else []
        if not hit:
            keys = [c.key for c in engine_cases.all_engine_cases()]
            raise SystemExit(f"--only: unknown case {w!r}; choose from "
                             f"{list(engine_cases.GROUPS)} or {keys}")
        chosen += hit
    return chosen


def header(info, threads):
    lines = [compare.header(info, threads).replace(
        "fastnn against its peers", "the training engine against its peers")]
    if engine_cases.HAVE_JAX:
        jax, _, _ = engine_cases.jax_modules()
        lines.append(f"jax     : {jax.__version__} ({jax.devices()[0].platform}; its own "
                     "thread pool, not limited by --threads)")
    else:
        lines.append("jax     : not installed: JAX rows skipped (pip install jax jaxlib)")
    env = {k: os.environ[k] for k in ENV_NOTES if k in os.environ}
    lines.append("env     : " + (", ".join(f"{k}={v}" for k, v in env.items()) or
                                 "none of " + ", ".join(ENV_NOTES[:4]) + ", ... set"))
    return "\n".join(lines)


def _row(results, key, name):
    for res in results:
        if res["key"] == key:
            for row in res["rows"]:
                if row["name"] == name:
                    return row
    return None


def aims(results):
    """[(aim, value of medians, value of mins, met)] for the aims whose rows ran."""
    out = []

    def ratio(key, num, den, text, lo=None, hi=None):
        a, b = _row(results, key, num), _row(results, key, den)
        if a is None or b is None:
            return
        med, mn = a["median"] / b["median"], a["min"] / b["min"]
        met = (lo is None or med >= lo) and (hi is None or med <= hi)
        out.append((text, med, mn, met))

    ratio("engine-spiral-f64", "notes", "plan", "spiral f64: notes' loop / plan >= 15", lo=15)
    ratio("engine-spiral-f32", "jax", "plan", "spiral f32: JAX fori_loop / plan >= 3", lo=3)
    for which, b in engine_cases.MB_CONFIGS:
        key = f"engine-minibatch-{which}-b{b}"
        ratio(key, "layers", "plan", f"{which} b{b}: LayerPath / plan >= 3", lo=3)
        ratio(key, "torch_sgd", "plan", f"{which} b{b}: torch / plan >= 10", lo=10)
    for floor in ("gemms_numpy", "gemms_grid"):
        ratio("engine-mlp", "plan", floor, f"MLP: plan / {floor} <= 1.05", hi=1.05)
    ratio("engine-mlp", "torch_sgd", "plan", "MLP: torch / plan > 1", lo=1.0)
    ratio("engine-mlp", "torch_sgd_torch_first", "plan_torch_first",
          "MLP, torch imported first: torch / plan > 1", lo=1.0)
    adam = [r for r in (_row(results, "engine-adam-step", n)
                        for n in ("torch_default", "torch_foreach", "torch_fused")) if r]
    if adam and _row(results, "engine-adam-step", "plan"):
        best = min(adam, key=lambda r: r["median"])
        ratio("engine-adam-step", best["name"], "plan",
              f"Adam step: fastest torch ({best['name']}) / plan > 1", lo=1.0)
    return out


def main(argv=None):
    args = parse_args(argv)
    cases.compiled()
    threads = args.threads or cases.fastnn.get_num_threads()
    cases.set_threads(threads)
    chosen = select(args.only)        # may import JAX (its header line needs it)
    if engine_cases.HAVE_JAX:
        engine_cases.jax_modules()
    info = cases.machine_info()
    print(header(info, threads))
    for peer, why in sorted(cases.MISSING.items()):
        print(f"note: {peer} is not importable ({why}); its rows are skipped")
    t0 = time.perf_counter()
    results = []
    try:
        for case in chosen:
            results.append(compare.run_case(case, args))
    finally:
        engine_cases.close_workers()
    failed = compare.summary(results)
    met = aims(results)
    if met:
        print("\n== aims (ratio of medians; of mins)")
        for text, med, mn, ok in met:
            print(f"   {'met    ' if ok else 'NOT met'}  {text:<52} {med:8.3f} {mn:8.3f}")
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.0f} s; load avg now "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "threads": threads, "quick": args.quick,
                       "argv": sys.argv[1:], "total_seconds": total, "cases": results,
                       "aims": [{"aim": t, "median": m, "min": n, "met": ok}
                                for t, m, n, ok in met]}, fh, indent=1, default=str)
        print(f"raw results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
