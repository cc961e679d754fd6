"""Where the SLO policy stands against the issue's goals, read from the tables the other
scripts generate: the "standing" part of docs/results.md. Nothing in it is typed by hand, so
it cannot fall behind the tables it sums up (a hand-written summary beside a generated
table did, once: docs/results.md, 2026-12-07, sixth session).

Reads docs/results.md's generated parts (the whole runs, the verdicts, the runs from zero,
the frontiers, `ebb tune`'s table), the runs' summary.csv files and docs/slo.md's two tables
of the queueing models against the simulator.

Usage: python3 docs/results/standing.py           (rewrites the part)
       python3 docs/results/standing.py --check   (exit 1 where the part differs: CI)"""
import csv
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from parts import part, replace_part  # noqa: E402
from verdicts import verdict  # noqa: E402

RESULTS = "docs/results.md"
SLO = "docs/slo.md"
TARGET = 0.999
# The clairvoyant goal: within this many points of the target, at no more than this many
# times the cold-start-aware clairvoyant's replica-seconds, wherever peak reaches the target.
CLAIRVOYANT_POINTS = 0.05
CLAIRVOYANT_RATIO = 1.15
# The queueing models: within this many points of the simulated attainment.
MODEL_POINTS = 0.3


def sections(text, marker):
    """The text under each heading that starts with `marker` (e.g. "### "), by its name."""
    found = {}
    for chunk in text.split("\n" + marker)[1:]:
        name, _, body = chunk.partition("\n")
        found[name.strip()] = body
    return found


def table_rows(text):
    """The first markdown table in `text` (its lines from the first that starts with "|"
    to the next blank line) as lists of cells, stripped: the header first, the separator
    dropped."""
    text = "\n" + text
    if "\n|" not in text:
        return []
    lines = text[text.index("\n|") + 1:].split("\n\n")[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[:1] + cells[2:]


def table(text):
    """The first markdown table in `text`, as dicts by header."""
    header, *rows = table_rows(text) or [[]]
    return [dict(zip(header, row)) for row in rows]


def percent(cell):
    return float(cell.rstrip("%")) / 100


def listed(items):
    return "; ".join(items) if items else "none"


def default_runs(doc):
    """The whole runs at the defaults (a run with its own `--policy` is not), by name: the
    section's body (its printed table) and its summary.csv rows by policy."""
    runs = {}
    for name, body in sections(part(doc, "results"), "### ").items():
        if "--policy" in body.split("```")[1]:
            continue
        with open(f"docs/results/{name}/summary.csv") as f:
            runs[name] = (body, {r["policy"]: r for r in csv.DictReader(f)})
    return runs


def against_kpa(runs, frontier_cost):
    """One run each against KPA's defaults: the wins, and each other run's verdict with what
    Ebb's frontier costs at KPA's attainment there."""
    wins, not_wins = 0, []
    for name, (_, rows) in runs.items():
        ebb, kpa = rows["ebb"], rows["kpa"]
        kind, shown = verdict(float(ebb["slo_attainment"]), float(ebb["replica_seconds"]),
                              float(kpa["slo_attainment"]), float(kpa["replica_seconds"]),
                              TARGET)
        if kind == "wins":
            wins += 1
            continue
        # `shown` reads "both meet (-0.007 pt, 0.86x)": the name before it.
        at = frontier_cost.get(name, "not swept")
        not_wins.append(f"{name} {shown.replace('**', '')}, where Ebb's frontier reaches "
                        f"KPA's attainment at {at} KPA's cost")
    return wins, len(runs), not_wins


def clairvoyant(runs):
    """The clairvoyant goal on the runs where peak provisioning reaches the target, read from
    the printed tables (the "vs clairvoyant" column is not in summary.csv)."""
    counted, met, missed = 0, 0, []
    for name, (body, _) in runs.items():
        printed = {r["policy"]: r for r in table(body)}
        if "peak" not in printed or percent(printed["peak"]["SLO attainment"]) < TARGET:
            continue
        counted += 1
        reached = percent(printed["ebb"]["SLO attainment"])
        ratio = float(printed["ebb"]["vs clairvoyant"].rstrip("x"))
        if reached >= TARGET - CLAIRVOYANT_POINTS / 100 and ratio <= CLAIRVOYANT_RATIO:
            met += 1
        else:
            missed.append(f"{name} ({reached * 100:.3f}% at {ratio:.2f}x)")
    return met, counted, missed


def counts(text):
    """The wins and run-seeds of each bullet that reads "wins N of M"."""
    return [(int(a), int(b)) for a, b in re.findall(r"wins (\d+) of (\d+)", text)]


def frontier(doc):
    """Each trace's two readings of Ebb's SLO frontier against KPA's and HPA's; and, by
    trace, what Ebb's SLO family costs at KPA's default attainment, against KPA's default
    (the cell's ratio, e.g. "0.97x")."""
    readings, behind, ebb_cost = 0, [], {}
    for name, body in sections(part(doc, "frontier"), "#### ").items():
        rows = {r["family"]: r for r in table(body)}
        cost_key = next(k for k in rows["kpa"] if k.startswith("replica-s at"))
        att_key = next(k for k in rows["kpa"] if k.startswith("attainment at"))

        def cost(family):
            cell = rows[family][cost_key]
            return float("inf") if cell.startswith("not") else float(cell.split()[0])

        def reached(family):
            # "costs more at every setting": no setting within KPA's cost.
            cell = rows[family][att_key]
            return percent(cell) if cell.endswith("%") else float("-inf")

        readings += 2
        ratio = re.search(r"\(([0-9.]+x)", rows["ebb-slo"][cost_key])
        ebb_cost[name] = ratio.group(1) if ratio else "not reached"
        cheapest = min(("kpa", "hpa"), key=cost)
        if cost("ebb-slo") > cost(cheapest):
            shown = "not reached" if cost("ebb-slo") == float("inf") else f"{cost('ebb-slo'):.0f}"
            behind.append(f"{name} at KPA's attainment (ebb-slo {shown} replica-s, "
                          f"{cheapest} {cost(cheapest):.0f})")
        highest = max(("kpa", "hpa"), key=reached)
        if reached("ebb-slo") < reached(highest):
            behind.append(f"{name} at KPA's cost (ebb-slo {rows['ebb-slo'][att_key]}, "
                          f"{highest} {rows[highest][att_key]})")
    return (readings - len(behind), readings, behind), ebb_cost


def model_grid(slo_doc, varied):
    """Cases within MODEL_POINTS of the simulator, for the dispatch and the planner's model,
    in docs/slo.md's table whose third column is `varied` (the two models' gaps are its
    10th and 12th columns: both are headed "gap (points)")."""
    rows = table_rows(slo_doc[slo_doc.index(f"| replicas | slots | {varied} |"):])[1:]
    dispatch = sum(abs(float(row[9])) <= MODEL_POINTS for row in rows)
    planner = sum(abs(float(row[11])) <= MODEL_POINTS for row in rows)
    return dispatch, planner, len(rows)


def tune(doc):
    """`ebb tune`'s recommendations that keep their promise on the second half, by family."""
    start = doc.index("| trace | family | chosen setting |")
    kept = {"HPA": [0, 0, []], "Ebb SLO": [0, 0, []]}
    for row in table(doc[start:]):
        tally = kept[row["family"]]
        tally[1] += 1
        check = row["second half (check)"]
        if "meets" in check or "keeps its promise" in check:
            tally[0] += 1
        else:
            tally[2].append(row["trace"])
    return kept


def standing(doc):
    """The standing part's text for `doc`, the text of docs/results.md."""
    slo_doc = open(SLO).read()
    (ahead, readings, behind), frontier_cost = frontier(doc)
    runs = default_runs(doc)
    wins, runs_count, not_wins = against_kpa(runs, frontier_cost)
    met, counted, missed = clairvoyant(runs)
    (first, first_of), (held, held_of) = counts(part(doc, "verdicts"))[:2]
    zero, zero_of = counts(part(doc, "zero"))[0]
    poisson = model_grid(slo_doc, "service sigma")
    bursty = model_grid(slo_doc, "arrival ca^2")
    promises = tune(doc)

    def row(goal, where, done):
        return f"| {goal} | {where} | {'yes' if done else '**no**'} |"

    hpa, own = promises["HPA"], promises["Ebb SLO"]
    lines = [
        "_Computed by `python3 docs/results/standing.py` from the tables on this page and in "
        "[slo.md](slo.md); CI checks that it agrees with them._",
        "",
        "| the issue's goal | where it stands | met |",
        "|---|---|---|",
        row("At its defaults, beats KPA's defaults on every run (attainment at least KPA's "
            "at no more replica-seconds, one of them strictly); one run each ([the runs](#step))",
            f"{wins} of {runs_count} runs; not: {listed(not_wins)}", wins == runs_count),
        row("The same over four seeds, each half ([verdicts](#verdicts-over-four-seeds-both-halves))",
            f"first halves (fit) {first} of {first_of}, second halves (held out) {held} of "
            f"{held_of}", first == first_of and held == held_of),
        row("The same from zero ([synthetic, four seeds](#starting-from-zero))",
            f"{zero} of {zero_of} run-seeds", zero == zero_of),
        row("The frontier on or above KPA's and HPA's, at KPA's default attainment and cost "
            "([frontiers](#frontiers-each-familys-own-knob-against-kpas-defaults))",
            f"{ahead} of {readings} readings; behind: {listed(behind)}", ahead == readings),
        row(f"Within {CLAIRVOYANT_POINTS} points of {TARGET * 100:.1f}% at no more than "
            f"{CLAIRVOYANT_RATIO}x the cold-start-aware clairvoyant, wherever peak "
            f"provisioning reaches {TARGET * 100:.1f}% (one run each)",
            f"{met} of {counted} runs; not: {listed(missed)}", met == counted),
        row(f"The queueing model within {MODEL_POINTS} points of the simulator at fixed "
            "replicas ([slo.md](slo.md#the-model-against-the-simulator-the-referee))",
            f"the planner's model on {poisson[1]} of {poisson[2]} cases with Poisson "
            f"arrivals and {bursty[1]} of {bursty[2]} with bursty ones; the model for "
            f"least-outstanding dispatch, which the planner does not size with, on "
            f"{poisson[0]} and {bursty[0]}",
            poisson[1] == poisson[2] and bursty[1] == bursty[2]),
        row("`ebb tune`'s HPA recommendation keeps on the second half the attainment it "
            "promised ([tune](#ebb-tune-on-every-shared-trace))",
            f"{hpa[0]} of {hpa[1]} traces (Ebb's own recommendation: {own[0]} of {own[1]}; "
            f"not: {listed(own[2])})", hpa[0] == hpa[1]),
    ]
    return "\n".join(lines)


def with_standing(doc):
    """`doc`, the text of docs/results.md, with its standing part computed from it."""
    return replace_part(doc, "standing", standing(doc))


def main():
    # The paths are the repository's: run from anywhere.
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit(__doc__)
    doc = open(RESULTS).read()
    new = with_standing(doc)
    if check:
        if new != doc:
            sys.exit("docs/results.md's standing part is not what the tables say: run "
                     "python3 docs/results/standing.py and commit the change")
        return
    open(RESULTS, "w").write(new)


if __name__ == "__main__":
    main()
