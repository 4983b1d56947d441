"""How often `spikerl-bench compare` raises a false alarm, and how small a regression it catches.

    python -m tools.gate_calibration RUN1 RUN2 RUN3 ... [--factors 1.05,1.1,1.15,1.2,1.3] [--fail-on RULES]

RUNs are honest runs of one commit and one configuration (e.g. `spikerl-bench run --profile ci`
several times on one machine). False alarms: every ordered pair of different runs is compared;
any exit code 1 is a false alarm. Sensitivity: for each factor F, every run j is doctored
(tools.doctor_run: wall time and energy x F, so env steps/s / F and energy per step x F) and
compared against every other run i; the share of comparisons that fail, per metric, is the
catch rate. Also prints the spread of the honest pairs' pooled changes per method.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

from bench.compare import config_diff, gate, load, rules
from tools.doctor_run import doctor


def _report(base: load.Side, new: load.Side, fail_on: tuple[rules.Rule, ...]) -> gate.Report:
    diffs = config_diff.config_differences(base, new)
    if diffs:
        sys.exit(f"configurations differ: {diffs[0]}")
    return gate.compare(base, new, fail_on)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--factors", default="1.05,1.1,1.15,1.2,1.3")
    p.add_argument("--fail-on", default=rules.DEFAULT_RULES_TEXT)
    a = p.parse_args(argv)
    fail_on = rules.parse_rules([a.fail_on])
    gated = [r.metric.name for r in fail_on]
    sides = [load.load_side(r) for r in a.runs]
    pairs = list(itertools.permutations(range(len(sides)), 2))

    print(f"rules: {', '.join(map(str, fail_on))}; {len(sides)} honest runs, {len(pairs)} ordered pairs")
    alarms, noisy = 0, 0
    changes: dict[tuple[str, str], list[float]] = {}
    for i, j in pairs:
        rep = _report(sides[i], sides[j], fail_on)
        alarms += rep.exit_code == 1
        noisy += bool(rep.too_noisy)
        if rep.exit_code:
            print(f"  false alarm: {a.runs[i].name} vs {a.runs[j].name}: "
                  + "; ".join(f"{r.label} {c.metric.name} {c.change:+.1%}" for r, c in rep.regressions))
        for row in rep.rows:
            if row.gated:
                for c in row.checks:
                    if c.metric.name in gated:
                        changes.setdefault((row.method, c.metric.name), []).append(c.change)
    print(f"false alarms: {alarms}/{len(pairs)} pairs ({alarms / len(pairs):.0%}); "
          f"pairs with a too-noisy comparison: {noisy}/{len(pairs)}")
    print("honest pairs, pooled change per method (min / median / max):")
    for (method, metric), vals in sorted(changes.items()):
        print(f"  {method:8s} {metric:16s} {min(vals):+.1%} / {statistics.median(vals):+.1%} / {max(vals):+.1%}")

    with tempfile.TemporaryDirectory() as tmp:
        for f in (float(x) for x in a.factors.split(",")):
            doctored = [load.load_side(doctor(r, Path(tmp) / f"{r.name}-x{f}", time_f=f, energy_f=f)) for r in a.runs]
            caught = {m: 0 for m in gated}
            failed = 0
            for i, j in pairs:
                rep = _report(sides[i], doctored[j], fail_on)
                failed += rep.exit_code == 1
                for m in rep.regressed_metrics:
                    caught[m] += 1
            print(f"x{f:g} (sps {1 / f - 1:+.1%}, energy per step {f - 1:+.0%}): gate fails {failed}/{len(pairs)}; "
                  + ", ".join(f"{m} caught {n}/{len(pairs)}" for m, n in caught.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
