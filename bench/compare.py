"""fastnn side by side with its peers, in one run, interleaved.

    python bench/compare.py [--quick] [--only NAME[,NAME...]] [--threads N] [--json PATH]

Cases (NAME): spiral (both dtypes; spiral-f64 / spiral-f32 for one), affine, softmax,
dropout, numgrad.  For each case every implementation is built, checked once against
the reference implementation (the "check" column), warmed up, and then timed in rounds:
each round times every implementation once, the order rotating from round to round, so
that a slow spell of this shared machine hits everyone alike.  The table gives the
median, the minimum and the spread (interquartile range over the median) per unit of
work, and peer/fastnn: the peer's median over fastnn's (above 1: fastnn is faster).
Peers that are not installed (torch, scikit-learn) are skipped with a note.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402  (bench/cases.py: the workloads and implementations)

UNIT_SCALE = {"us": 1e6, "ms": 1e3}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions (about 40 s instead of about 3 min)")
    ap.add_argument("--only", metavar="NAME",
                    help="comma-separated cases: spiral, spiral-f64, spiral-f32, affine, "
                         "softmax, dropout, numgrad")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for fastnn, every BLAS and torch (default: the cores "
                         "this process may use)")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed rounds per case (default: each case's own)")
    ap.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                    help="untimed sleep after each timed call (default 0.1, 0.05 with "
                         "--quick), so that one library's idle worker threads, still "
                         "spinning, do not land on the next one's clock")
    ap.add_argument("--json", metavar="PATH", help="write the raw results here")
    return ap.parse_args(argv)


def select(all_cases, only):
    if not only:
        return all_cases
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    keys = [c.key for c in all_cases]
    chosen = []
    for w in wanted:
        hit = [c for c in all_cases if c.key == w or c.key.split("-")[0] == w]
        if not hit:
            raise SystemExit(f"--only: unknown case {w!r}; choose from "
                             f"{sorted(set(keys) | {k.split('-')[0] for k in keys})}")
        chosen += [c for c in hit if c not in chosen]
    return chosen


def header(info, threads):
    blas = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                     f"{Path(b['filepath']).name})" for b in info["blas"]) or "none found"
    lines = [
        "fastnn against its peers, interleaved, medians per unit of work",
        f"machine : {info['cpu_model']}, {info['cores']} cores available "
        f"(os.cpu_count {info['cpu_count']}), {info['platform']}",
        f"threads : {threads} for fastnn (OpenMP), every BLAS pool"
        + (" and torch" if info["torch"] else ""),
        f"fastnn  : {info['version']}, backend {info['backend']}, OpenMP "
        f"{'yes' if info['openmp'] else 'no'}, from {info['fastnn_path']}",
        f"python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}",
        f"BLAS    : {blas}",
        "torch   : " + (f"{info['torch']} ({info['torch_blas']}, "
                         f"{info['torch_threads']} threads)" if info["torch"]
                         else "not installed: skipped"),
        "sklearn : " + (info["sklearn"] or "not installed: skipped"),
    ]
    if info.get("loadavg"):
        lines.append("load avg: " + " ".join(f"{x:.2f}" for x in info["loadavg"])
                     + " (1/5/15 min; other work on the machine slows everyone)")
    return "\n".join(lines)


def measure(case, reps, inner, warmup=2, pause=0.0):
    """Seconds per unit of work, per candidate: ``reps`` rounds of ``inner`` units,
    interleaved, after ``warmup`` untimed calls of each.

    The pause after each call matters: OpenMP runtimes (fastnn's libgomp, torch's own)
    and OpenBLAS (numpy and scipy each load one) keep their worker threads spinning or
    yielding for a while after a parallel region ends (OpenBLAS: up to ~0.1 s); without
    it, the next implementation's clock would pay for the previous one's idle threads on
    a 2-core machine.  An implementation's own idle threads, spinning into its own next
    operation, stay on its clock: that is what its users get.

    After the pause, each timed call is preceded by one untimed call of the same
    implementation, so that every implementation is timed as it runs in a training
    loop, right after its own previous call, rather than waking cold from the pause
    (sleeping OpenMP workers, an idle virtual CPU: up to ~0.5 ms here).

    A runner with ``self_timed`` set (a candidate living in a worker process, see
    engine_cases.py) reports its own seconds in ``last_seconds``: the pipe to it is on
    no one's clock.  Times are divided by ``case.steps_per_unit`` (a unit may be an
    epoch of several steps).  A candidate with an ``inner_share`` below 1 runs that
    share of ``inner`` units per timed call (at least one)."""
    runners = [(c.name, case.runner(c.name), max(1, round(inner * c.inner_share)))
               for c in case.candidates]
    for _ in range(warmup):
        for _, run, units in runners:
            run(units)
    times = {name: [] for name, _, _ in runners}
    k = len(runners)
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()   # as timeit does: a collection inside one call would land on it alone
    try:
        for r in range(reps):
            for name, run, units in runners[r % k:] + runners[:r % k]:
                run(1)                  # untimed: wake this implementation's threads
                t0 = time.perf_counter()
                run(units)
                elapsed = time.perf_counter() - t0
                if getattr(run, "self_timed", False):
                    elapsed = run.last_seconds
                times[name].append(elapsed / (units * case.steps_per_unit))
                if pause:
                    time.sleep(pause)
    finally:
        if gc_was:
            gc.enable()
    return times


def summarize(samples):
    s = sorted(samples)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
    med = statistics.median(s)
    return {"median": med, "min": s[0], "iqr_rel": (q[2] - q[0]) / med if med else 0.0}


def fmt_time(seconds, unit):
    v = seconds * UNIT_SCALE[unit]
    return f"{v:10.1f}" if v >= 100 else f"{v:10.2f}" if v >= 1 else f"{v:10.3f}"


def run_case(case, args):
    inner = (case.quick_inner or case.inner) if args.quick else case.inner
    reps = args.reps or (case.quick_reps if args.quick else case.reps)
    print(f"\n== {case.title}")
    per = case.per or ("step" if case.key.startswith("spiral") else "call")
    shares = " (slower peers fewer)" if any(c.inner_share < 1 for c in case.candidates) else ""
    print(f"   {case.unit} per {per}; {reps} rounds x {inner} unit(s){shares}, interleaved, "
          "after a warm-up")
    checks = {}
    for c in case.candidates:
        ref = case.reference_for(c.name)
        if ref == c.name or (ref is None and case.compare is None):
            checks[c.name] = ("reference", None, True)
        elif not c.check:
            checks[c.name] = ("not compared", None, True)
        else:
            err = case.verify(c.name)
            ok = err <= case.tol[c.name]
            checks[c.name] = (f"{'ok' if ok else 'FAIL'} {err:.1e}", err, ok)
    t0 = time.perf_counter()
    pause = args.pause if args.pause is not None else (0.05 if args.quick else 0.1)
    times = measure(case, reps, inner, pause=pause)
    wall = time.perf_counter() - t0
    stats = {name: summarize(v) for name, v in times.items()}
    width = max(len(c.label) for c in case.candidates)
    print(f"   {'implementation':<{width}} {'median':>10} {'min':>10} {'IQR':>6} "
          f"{'peer/fastnn':>12} {'(of mins)':>9}  check")
    rows = []
    for c in case.candidates:
        st = stats[c.name]
        base = case.baseline(c)
        ratio = st["median"] / stats[base.name]["median"]
        ratio_min = st["min"] / stats[base.name]["min"]
        shown = base.name != c.name
        ratio_s = f"{ratio:11.2f}x" if shown else ""
        ratio_min_s = f"{ratio_min:8.2f}x" if shown else ""
        print(f"   {c.label:<{width}} {fmt_time(st['median'], case.unit)} "
              f"{fmt_time(st['min'], case.unit)} {100 * st['iqr_rel']:5.0f}% "
              f"{ratio_s:>12} {ratio_min_s:>9}  {checks[c.name][0]}")
        rows.append({"name": c.name, "label": c.label, "kind": c.kind,
                     "versus": base.name, "ratio": ratio, "ratio_of_mins": ratio_min,
                     "check": checks[c.name][0],
                     "check_error": checks[c.name][1], "check_ok": checks[c.name][2],
                     "seconds": times[c.name], **st})
    derived = []
    for label, med, mn in (case.derived(stats) if case.derived else []):
        derived.append({"label": label, "median": med, "min": mn})
        print(f"   {label}: {med:.3f} (of mins {mn:.3f})")
    print(f"   ({wall:.1f} s)")
    return {"key": case.key, "title": case.title, "unit": case.unit, "inner": inner,
            "reps": reps, "steps_per_unit": case.steps_per_unit, "rows": rows,
            "derived": derived}


def summary(results):
    print("\n== summary: peer / fastnn (above 1: fastnn faster), of medians and of mins")
    w = max([11] + [len(res["key"]) for res in results])
    for res in results:
        for row in res["rows"]:
            if row["kind"] == "fastnn":
                continue
            print(f"   {res['key']:<{w}} {row['label']:<48} {row['ratio']:8.2f}x "
                  f"{row['ratio_of_mins']:8.2f}x")
        for d in res.get("derived", []):
            print(f"   {res['key']:<{w}} {d['label']:<48} {d['median']:8.3f}  {d['min']:8.3f}")
    failed = [(res["key"], row["name"]) for res in results for row in res["rows"]
              if not row["check_ok"]]
    if failed:
        print("   CHECK FAILED (results differ beyond tolerance): "
              + ", ".join(f"{k}/{n}" for k, n in failed))
    return failed


def main(argv=None):
    args = parse_args(argv)
    cases.compiled()     # fail here, clearly, if fastnn was never built
    threads = args.threads or cases.fastnn.get_num_threads()
    cases.set_threads(threads)
    info = cases.machine_info()
    print(header(info, threads))
    for peer, why in sorted(cases.MISSING.items()):
        print(f"note: {peer} is not importable ({why}); its rows are skipped")
    t0 = time.perf_counter()
    results = [run_case(case, args) for case in select(cases.all_cases(), args.only)]
    failed = summary(results)
    total = time.perf_counter() - t0
    try:
        load = os.getloadavg()
        print(f"\ntotal {total:.0f} s; load avg now "
              + " ".join(f"{x:.2f}" for x in load))
    except OSError:
        print(f"\ntotal {total:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "threads": threads, "quick": args.quick,
                       "argv": sys.argv[1:], "total_seconds": total, "cases": results},
                      fh, indent=1, default=str)
        print(f"raw results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
