"""Verdicts of Ebb's built-in SLO policy against KPA's defaults, one per run, half and seed.

Reads CSV lines `half,seed,run,ebb attainment,ebb replica-s,kpa attainment,kpa replica-s`
(attainments as shares) on standard input and writes the verdicts section of
docs/results.md. The SLO's attainment target is the first argument (a share, e.g. 0.999).

A run-seed is one of:
- **wins**: attainment at least KPA's at no more replica-seconds, one of them strictly (the
  issue's goal, by the letter);
- **both meet**: both reach the SLO's target and Ebb costs less, with attainment lower by a
  little: the letter of the goal calls this a loss, the SLO does not;
- **KPA misses**: KPA's attainment is below the target, Ebb's is higher, and it costs more:
  Ebb spends to come closer to (or reach) what the user asked for;
- **loses**: anything else.
Usage: python3 docs/results/verdicts.py TARGET < lines.csv"""
import collections
import csv
import sys


def verdict(ea, er, ka, kr, target):
    points, ratio = (ea - ka) * 100, er / kr
    shown = f"{points:+.3f} pt, {ratio:.2f}x"
    if ea >= ka and er <= kr and (ea > ka or er < kr):
        return "wins", f"wins ({shown})"
    if ea >= target and ka >= target and er < kr:
        return "both meet", f"both meet ({shown})"
    if ka < target and ea > ka and er > kr:
        return "KPA misses", f"KPA misses ({shown})"
    return "loses", f"**loses** ({shown})"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    target = float(sys.argv[1])
    rows = collections.defaultdict(dict)
    for half, seed, run, ea, er, ka, kr in csv.reader(sys.stdin):
        rows[(run, half)][int(seed)] = (float(ea), float(er), float(ka), float(kr))
    order = []
    for run, _ in rows:
        if run not in order:
            order.append(run)
    seeds = sorted({s for cells in rows.values() for s in cells})
    counts = {h: collections.Counter() for h in ("first", "second")}
    table = ["| run | half | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for run in order:
        for half in ("first", "second"):
            cells = rows.get((run, half), {})
            shown = []
            for s in seeds:
                if s not in cells:
                    shown.append("-")
                    continue
                kind, text = verdict(*cells[s], target)
                counts[half][kind] += 1
                shown.append(text)
            label = "first (fit)" if half == "first" else "second (held out)"
            table.append(f"| {run} | {label} | " + " | ".join(shown) + " |")

    for half, name in (("first", "First halves (where constants are chosen)"),
                       ("second", "Second halves (held out)")):
        c = counts[half]
        total = sum(c.values())
        print(f"- **{name}**: wins {c['wins']} of {total} run-seeds; both meet the SLO with Ebb "
              f"cheaper {c['both meet']}; KPA misses the SLO and Ebb is higher at more cost "
              f"{c['KPA misses']}; loses {c['loses']}.")
    print()
    print(f"Attainment target {target * 100:g}%; points are Ebb's attainment less KPA's, the "
          "ratio is Ebb's replica-seconds over KPA's.")
    print()
    print("\n".join(table))


if __name__ == "__main__":
    main()
