"""Where the capacitated nucleolus spends its time (issue 6): set-up, separation MILPs, LPs.

Run from the repository root:  python bench/market_nucleolus_split.py [--players 21|40]
                               python bench/market_nucleolus_split.py --random 8

The markets are those of bench/market_algorithms.py (same seed and draws): the
paper-sized round (21 players, capacitated on both sides) or the 40-player market.
Each part is printed in CPU seconds of this process and as a share of the total of
the same run.  Parts are measured by wrapping the solver entry points: the
separation MILP (``market.separation._milp``) and branch and bound
(``market.separation.split_search``, where the code has it), the cut pool's persistent LP model
(``market.highs.PersistentLP``: stage, face-point and always-tight LPs) and any LP
still built through scipy's ``linprog`` in market.sequential_lp (so the script also
times older code, e.g. main unpacked with ``git archive``); set-up is everything
before the stages start (seeds and their values, matchings, the level-0 stage, the
core point).  With ``--certify`` the point is then checked by Kohlberg's criterion
for the whole game (``market.certificate``) from the coalitions the stages used.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from market import separation, sequential_lp  # noqa: E402
from market.nucleolus import market_nucleolus  # noqa: E402
from market_algorithms import SEED, nucleolus_markets  # noqa: E402


def markets():
    """The two capacitated markets of bench/market_algorithms.py (its full run's draws)."""
    drawn = nucleolus_markets(np.random.default_rng(SEED + 1), 200)
    return {21: drawn["paper"], 40: drawn["40 players"]}


KEPT: list = []      # the last Stages built (its coalitions feed --certify)


def _keep(init):
    def wrapper(self, *args, **kwargs):
        init(self, *args, **kwargs)
        KEPT[:] = [self]
    return wrapper


def split(w, bc, sc, repeat):
    """CPU seconds per part (mean over ``repeat`` runs after one warm-up run)."""
    seconds, calls, where = collections.defaultdict(float), collections.Counter(), ["stage"]

    def timed(key, fn, context=None):
        def wrapper(*args, **kwargs):
            before, where[0] = where[0], context or where[0]
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                label = key if key != "LP" else f"LP ({where[0]})"
                seconds[label] += time.process_time() - t0
                calls[label] += 1
                where[0] = before
        return wrapper

    patches = [(separation, "_milp", timed("separation MILP", separation._milp)),
               *([(separation, "split_search",
                   timed("separation branch and bound", separation.split_search))]
                 if hasattr(separation, "split_search") else []),
               (sequential_lp, "linprog", timed("LP", sequential_lp.linprog)),
               (sequential_lp.Stages, "__init__", _keep(sequential_lp.Stages.__init__)),
               (sequential_lp.Stages, "_nearest_on_face",
                timed("face-point steps", sequential_lp.Stages._nearest_on_face, "face point")),
               (sequential_lp.Stages, "_always_tight",
                timed("always-tight steps", sequential_lp.Stages._always_tight, "always-tight")),
               (sequential_lp.Stages, "solve", timed("stages", sequential_lp.Stages.solve))]
    try:
        from market.highs import PersistentLP
    except ImportError:             # older code: every LP goes through linprog
        PersistentLP = None
    if PersistentLP is not None:
        patches += [(PersistentLP, name, timed("LP", getattr(PersistentLP, name), context))
                    for name, context in (("stage", "stage"), ("face", "face point"),
                                          ("slack", "always-tight"))]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, fn in patches:
        setattr(obj, name, fn)
    try:
        market_nucleolus(w, bc, sc)
        seconds.clear()
        calls.clear()
        t0 = time.process_time()
        for _ in range(repeat):
            x = market_nucleolus(w, bc, sc)
        total = (time.process_time() - t0) / repeat
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    return (total, {k: v / repeat for k, v in seconds.items()},
            {k: c // repeat for k, c in calls.items()}, np.r_[x])


def random_rounds(k: int, seed: int) -> int:
    """One CPU time per paper-sized round for ``k`` rounds drawn like the benchmark's
    (bench/market_algorithms.py ``paper_round``): the one market the goal is stated on
    is one draw among many, and the nucleolus's time varies with the game."""
    from market_algorithms import paper_round_times
    times = paper_round_times(np.random.default_rng(seed), k)
    print(f"nucleolus of {k} paper-sized rounds (seed {seed}), CPU s each: "
          + " ".join(f"{t:.3f}" for t in times))
    print(f"  median {np.median(times):.3f} s, mean {np.mean(times):.3f} s, max {max(times):.3f} s; "
          f"{sum(t <= 0.2 for t in times)} of {k} within 0.2 s (load average {os.getloadavg()[0]:.1f})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, choices=[21, 40], default=21,
                        help="the paper-sized round (21, default) or the 40-player market")
    parser.add_argument("--repeat", type=int, default=3, help="runs to average (default 3)")
    parser.add_argument("--certify", action="store_true",
                        help="then check the point by Kohlberg's criterion for the whole game")
    parser.add_argument("--random", type=int, default=0, metavar="K",
                        help="instead: CPU time of K more paper-sized rounds drawn as the "
                             "benchmark's is (seed --seed), one run each")
    parser.add_argument("--seed", type=int, default=99, help="seed of the --random rounds (default 99)")
    args = parser.parse_args()
    if args.random:
        return random_rounds(args.random, args.seed)
    w, bc, sc = markets()[args.players]
    total, seconds, calls, x = split(w, bc, sc, args.repeat)
    print(f"nucleolus, {args.players} players: {total:.3f} s CPU per run "
          f"(load average {os.getloadavg()[0]:.1f})")
    stages = seconds.pop("stages")
    rows = [("set-up before the stages", total - stages, 1)]
    solver = {k: v for k, v in seconds.items() if not k.endswith("steps")}
    rows += sorted(((k, v, calls[k]) for k, v in solver.items()), key=lambda r: -r[1])
    inner = sum(solver.values())
    rows.append(("rest of the stages (Python: pool, span, rows)", stages - inner, 1))
    for label, secs, count in rows:
        each = f"{count:4d} calls, {1000 * secs / count:6.1f} ms each" if count > 1 else " " * 30
        print(f"  {label:<46} {secs:7.3f} s  {100 * secs / total:5.1f} %  {each}".rstrip())
    if args.certify:
        from market.certificate import certify_market_nucleolus
        stages = KEPT[0]
        t0 = time.process_time()
        cert = certify_market_nucleolus(w, bc, sc, x, set(stages.free) | stages.settled)
        print(f"Kohlberg certificate of the point from the {len(stages.free) + len(stages.settled)} "
              f"coalitions the stages used: {cert.certified} ({cert.levels} pool levels, "
              f"{time.process_time() - t0:.3f} s CPU with their exact values)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
