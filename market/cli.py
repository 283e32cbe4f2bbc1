"""Command line of the market layer: ``market paper`` and ``market scale``.

Wired into the ``p2pchain`` console script by ``nodes/cli.py`` through
:func:`add_commands`; also runnable alone: ``python -m market.cli market paper``.
This is an edge: it reads the clock (``market scale``) and writes files; the
experiment itself is pure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["add_commands", "main"]

DEFAULT_SCALES = (0.3, 0.4, 0.5, 0.75, 1.0)


def add_commands(subparsers) -> None:
    """Add ``market paper`` and ``market scale`` to an argparse subparsers object."""
    market = subparsers.add_parser(
        "market", help="EV P2P energy market experiments (paper reproduction, scale)",
        description="Run the EV P2P energy market of Li, Chen & Zhou (2021) outside the chain.")
    sub = market.add_subparsers(dest="market_command", metavar="{paper,scale}")
    sub.required = True
    paper = sub.add_parser(
        "paper", help="reproduce the paper's Fig. 4 experiment (success / renewable rates)",
        description="Run D seeded days of 24 hourly rounds of the paper's scenario (15 EVs, "
                    "5 PV, 1 SMES on the IEEE 33-bus feeder) with and without the SMES, for "
                    "each line-rating scale; write rounds.csv, trades.csv, summary.json and "
                    "PNG plots to --out, and print the two rates beside the paper's.")
    paper.add_argument("--days", type=int, default=10, help="seeded days per run (default 10)")
    paper.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    paper.add_argument("--no-smes", action="store_true", help="only run without the SMES")
    paper.add_argument("--rating-scale", type=float, nargs="+", default=list(DEFAULT_SCALES),
                       metavar="X", help="line-rating multipliers to sweep (default "
                       f"{' '.join(map(str, DEFAULT_SCALES))}); Fig. 4 uses 1.0 if given")
    paper.add_argument("--out", type=Path, default=Path("market-paper-out"),
                       help="output directory (default ./market-paper-out)")
    paper.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    paper.add_argument("--no-pricing", action="store_true",
                       help="skip nucleolus pricing and settlement (the rates do not depend "
                            "on prices; prices and payments are left empty)")
    paper.add_argument("--evs", type=int, default=15, help="number of EVs (paper: 15)")
    paper.add_argument("--pvs", type=int, default=5, help="number of rooftop PV arrays (paper: 5)")
    paper.set_defaults(func=cmd_paper)
    scale = sub.add_parser(
        "scale", help="time one market round with 100 to 2,000 prosumers",
        description="Run single 15:00 rounds with many prosumers on several 33-bus feeders "
                    "under one substation and print the time of each stage.")
    scale.add_argument("--prosumers", type=int, nargs="+", default=[100, 500, 1000, 2000],
                       metavar="N", help="population sizes (default 100 500 1000 2000)")
    scale.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    scale.add_argument("--no-pricing", action="store_true",
                       help="skip the nucleolus pricing and settlement stages")
    scale.set_defaults(func=cmd_scale)


class _Progress:
    """A plain-text progress bar on stderr."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} day runs")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _fmt(s) -> str:
    if s.mean is None:
        return "n/a"
    if s.ci_low is None:
        return f"{100 * s.mean:5.1f} %"
    return f"{100 * s.mean:5.1f} % [{100 * s.ci_low:5.1f}, {100 * s.ci_high:5.1f}]"


def cmd_paper(args: argparse.Namespace) -> int:
    from market.experiment import PAPER, run_experiment
    from market.grid import load_feeder
    from market.report import smes_effects, write_csv, write_json, write_plots
    from market.scenario import ScenarioParams

    if args.days < 1 or any(x <= 0 for x in args.rating_scale) or args.evs < 0 or args.pvs < 0:
        print("error: --days must be >= 1, rating scales > 0, --evs and --pvs >= 0",
              file=sys.stderr)
        return 2
    try:    # before the experiment's minutes, not after them
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot write to --out {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    params = ScenarioParams(n_ev=args.evs, n_pv=args.pvs)
    modes = (False,) if args.no_smes else (False, True)
    scales = tuple(dict.fromkeys(args.rating_scale))
    result = run_experiment(load_feeder(), params, days=args.days, seed=args.seed,
                            rating_scales=scales, smes_modes=modes,
                            with_pricing=not args.no_pricing, progress=_Progress())
    files = write_csv(result, args.out) + [write_json(result, params, args.out)]
    if not args.no_plots:
        files += write_plots(result, args.out)
    print(f"{'scale':>6} {'SMES':>5}  {'success rate (95% CI)':<28} {'renewable consumption (95% CI)'}")
    for scale, mode, sr, rc in result.summary:
        print(f"{scale:6.2f} {'yes' if mode else 'no':>5}  {_fmt(sr):<28} {_fmt(rc)}")
    for row in smes_effects(result):
        sr, rc = row["success_rate"], row["renewable_consumption_rate"]
        if sr["mean"] is not None and sr["ci95_low"] is not None:
            print(f"SMES effect at scale {row['rating_scale']:.2f} (paired days): success "
                  f"{100 * sr['mean']:+.1f} pts [{100 * sr['ci95_low']:+.1f}, {100 * sr['ci95_high']:+.1f}]"
                  + (f", renewable {100 * rc['mean']:+.1f} pts [{100 * rc['ci95_low']:+.1f}, "
                     f"{100 * rc['ci95_high']:+.1f}]" if rc["ci95_low"] is not None else ""))
    print(f"paper: success {100 * PAPER['success_rate'][0]:.1f} % -> "
          f"{100 * PAPER['success_rate'][1]:.1f} %, renewable "
          f"{100 * PAPER['renewable_consumption_rate'][0]:.1f} % -> "
          f"{100 * PAPER['renewable_consumption_rate'][1]:.1f} %")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from market.grid import load_feeder
    from market.scale import STAGES, scale_round
    from market.scenario import ScenarioParams

    if any(n < 1 for n in args.prosumers):
        print("error: --prosumers takes counts >= 1", file=sys.stderr)
        return 2
    feeder, params = load_feeder(), ScenarioParams()
    print(f"{'prosumers':>9} {'buses':>6} {'quotes':>6} {'trades':>6} "
          + " ".join(f"{s:>12}" for s in STAGES) + f" {'total':>8}   (seconds)")
    for n in args.prosumers:
        t = scale_round(feeder, params, n, args.seed, clock=time.perf_counter,
                        with_pricing=not args.no_pricing)
        secs = dict(t.stage_seconds)
        print(f"{n:9d} {t.buses:6d} {t.quotations:6d} {t.trades:6d} "
              + " ".join(f"{secs[s]:12.4f}" for s in STAGES) + f" {t.total_seconds:8.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m market.cli market paper ...``."""
    parser = argparse.ArgumentParser(prog="python -m market.cli",
                                     description="p2pchain market experiments")
    sub = parser.add_subparsers(dest="command", metavar="{market}")
    sub.required = True
    add_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
