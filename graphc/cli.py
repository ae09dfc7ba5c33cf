"""The ``graphc`` command: ``graphc bench`` and ``graphc show MODEL``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def _bench(args: argparse.Namespace) -> int:
    from .bench import runner
    from .bench.workloads import WORKLOADS

    keys = [k.strip().upper() for k in args.workloads.split(",")] if args.workloads else list(WORKLOADS)
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        print(f"graphc bench: unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    device = "cuda" if args.gpu else "cpu"
    if args.gpu:
        from .bench import gpu

        if not gpu.cuda_available():
            print("graphc bench --gpu: no CUDA device here; nothing to run", file=sys.stderr)
            return 0
        engines = gpu.engines()
    else:
        engines = None
    log = (lambda s: print(s, file=sys.stderr)) if args.verbose else (lambda s: None)
    result = runner.run(keys, quick=args.quick, device=device, engines=engines, log=log,
                        compile_time=not args.no_compile_time, threads=args.threads)
    print(runner.markdown(result))
    if args.gpu:
        from .bench import gpu

        result["pointwise_bandwidth"] = gpu.pointwise_bandwidth()
        print("\n" + gpu.bandwidth_markdown(result["pointwise_bandwidth"]))
    if args.json:
        runner.write_json(result, args.json)
    if args.png:
        runner.write_png(result, args.png)
    return 0


def _show(args: argparse.Namespace) -> int:
    import graphc as gc

    from .bench.workloads import WORKLOADS, graphc_loss, initial_params

    key = args.model.upper()
    if key not in WORKLOADS:
        print(f"graphc show: unknown model {args.model!r}; choose from {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    w = WORKLOADS[key]
    step = gc.compile(graphc_loss(w, initial_params(w)), optimizer=gc.optim.SGD(lr=w.lr), backend=args.backend)
    print(f"# {key}: {w.title}\n\n## graph\n{step.graph}\n\n## formulas\n{step.formulas()}\n\n"
          f"## generated source ({args.backend})\n{step.source}\n\n## report\n{step.report()}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="graphc: a static-graph compiler for small nets")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run the lecture workloads on graphc, NumPy, PyTorch, torch.compile and JAX")
    b.add_argument("--quick", action="store_true", help="a few steps per engine, for CI; skips torch.compile on CPU")
    b.add_argument("--json", metavar="PATH", help="write every number as JSON")
    b.add_argument("--png", metavar="PATH", help="write a bar chart (needs matplotlib)")
    b.add_argument("--workloads", metavar="W1,W2", help="a subset of W1,W2,W3,W4")
    b.add_argument("--gpu", action="store_true", help="CUDA: graphc-Triton (with and without CUDA graphs) vs "
                   "torch eager and torch.compile(mode='reduce-overhead'), plus fused-kernel bandwidth")
    b.add_argument("--threads", type=int, default=1, help="CPU threads per engine (default 1: reproducible "
                   "on a shared machine)")
    b.add_argument("--no-compile-time", action="store_true", help="skip the compile-time measurement")
    b.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    b.set_defaults(run=_bench)
    s = sub.add_parser("show", help="print a lecture model's graph, gradient formulas and generated source")
    s.add_argument("model", help="W1, W2, W3 or W4 (see graphc bench)")
    s.add_argument("--backend", default="numpy")
    s.set_defaults(run=_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:  # `graphc show W2 | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
