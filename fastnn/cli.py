"""The ``fastnn`` command.  ``fastnn spiral`` runs the notes' case study."""
import argparse
import os
import sys


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser():
    """The argparse parser of the ``fastnn`` command (subcommands spiral, config)."""
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("spiral", help="the spiral case study: linear softmax, then a "
                                       "2-layer ReLU net, trained by gradient descent")
    sp.add_argument("--seed", type=int, default=0, help="seed for data and weights (0)")
    sp.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    sp.add_argument("--hidden", type=_positive_int, default=100, help="hidden units (100)")
    sp.add_argument("--steps", type=_positive_int, default=10_000,
                    help="gradient steps of the 2-layer net (10000)")
    sp.add_argument("--linear-steps", type=_positive_int, default=200,
                    help="gradient steps of the linear classifier (200)")
    sp.add_argument("--step-size", type=float, default=1.0, help="(1.0)")
    sp.add_argument("--reg", type=float, default=1e-3, help="L2 strength (1e-3)")
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="threads for kernels and BLAS (default: all cores)")
    sp.add_argument("--plot", metavar="DIR", default=None,
                    help="write the two decision-boundary PNGs into DIR")
    sub.add_parser("config", help="print the backend, OpenMP, threads and BLAS in use")
    return parser


def _spiral(args):
    import fastnn
    from fastnn import case_study
    if args.plot is not None:
        try:
            from fastnn import plot
            plot._pyplot()
        except ImportError as exc:
            print(f"fastnn: --plot: {exc}", file=sys.stderr)
            return 2
    if args.threads is not None:
        fastnn.set_num_threads(args.threads)
    X, y, linear, net = case_study.run(seed=args.seed, dtype=args.dtype, hidden=args.hidden,
                                       steps=args.steps, linear_steps=args.linear_steps,
                                       step_size=args.step_size, reg=args.reg)
    if args.plot is not None:
        os.makedirs(args.plot, exist_ok=True)
        for result, fname in ((linear, "spiral_linear.png"), (net, "spiral_net.png")):
            path = os.path.join(args.plot, fname)
            plot.decision_boundary(result.net, X, y, path,
                                   title=f"{result.name}: {result.accuracy:.0%} train")
            print(f"wrote {path}")
    return 0


def main(argv=None):
    """Run the ``fastnn`` command with argv (default sys.argv[1:]); returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "spiral":
        return _spiral(args)
    import fastnn
    fastnn.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
