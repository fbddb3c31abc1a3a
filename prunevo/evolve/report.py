"""Evolution's reports, beside ``transfer/report.py``: what ``prunevo evolve``, ``show`` and ``score`` print (a
run's data roles, hall of fame, baselines with their allocation, re-scoring and verdicts), as plain text."""
from __future__ import annotations


def fitness_text(value: float | None, width: int = 8) -> str:
    return f"{value:{width}.4f}" if value is not None else f"{'n/a':>{width}}"


def print_entries(title: str, entries, best=None, limit: int | None = None) -> None:
    """Hall-of-fame rows; with ``best`` (the best classic row) a column of the gap to it."""
    print(title)
    gap_head = f"  {'vs best':>8}" if best is not None else ""
    print(f"  {'#':>2}  {'fitness':>8}{gap_head}  {'size':>4}  {'gen':>3}  formula (simplified)")
    for i, e in enumerate(entries[:limit], 1):
        gap = f"  {e.fitness - best.fitness:+8.4f}" if best is not None else ""
        same = f"  (+{len(e.equivalents)} selecting the same channels)" if e.equivalents else ""
        print(f"  {i:>2}  {e.fitness:8.4f}{gap}  {e.complexity:>4}  {e.generation:>3}  "
              f"{e.formula.simplified.text}{same}")


def baseline_note(row) -> str:
    if row.reason:
        return f"  (invalid: {row.reason})"
    if row.not_applicable:
        where = "; ".join(f"{task}: {why}" for task, why in row.not_applicable.items())
        return f"  (n/a: {where})" if row.fitness is None else f"  (n/a on {where}; fitness over the other tasks)"
    return f"  ± {row.fitness_std:.4f} over seeds" if row.fitness_std else ""


def best_classic_text(best) -> str:
    return (f"best classic: {best.label} {best.fitness:.4f} (best (criterion, allocation) pair of the classic and "
            f"Torch-Pruning criteria scored on every task)" if best is not None
            else "best classic: none applies to every task")


def print_baselines(rows) -> None:
    """Baselines best first, each with its allocation (uniform, global...); criteria that are n/a somewhere or
    invalid come after the comparable ones."""
    from prunevo.fitness.scoring import best_classic

    print("baselines (same tasks, same budget); " + best_classic_text(best_classic(rows)))
    order = sorted(rows, key=lambda r: (not r.comparable, r.fitness is None, -(r.fitness or 0.0)))
    for row in order:
        print(f"    {fitness_text(row.fitness)}  {shown_name(row, rows)}{baseline_note(row)}")


def shown_name(row, rows) -> str:
    """A score row's name, with its allocation when rows of several allocations stand side by side."""
    return row.label if any(r.variant for r in rows) else row.name


def print_data_roles(roles: dict[str, dict[str, str]]) -> None:
    """Which images each step of each task read (config.json's ``data``)."""
    for task, steps in roles.items():
        print(f"data of {task}:")
        for step, what in steps.items():
            print(f"    {step + ':':<24} {what}")


def print_rescored(run) -> None:
    """The re-scoring: hall of fame and baselines, mean ± std over fresh seeds on held-out data (and on the
    check tasks), best first; then the winner against the best classic, paired by seed, with 95% intervals."""
    from prunevo.fitness.rescore import verdicts
    from prunevo.primitives import Formula
    from prunevo.pruning.criteria import RANDOM

    rows = run.rescored
    if not rows:
        return
    check = rows[0].check is not None
    seeds = len(next((r.fitness.values for r in rows if r.fitness.values), []))
    print(f"re-scored on held-out data, {seeds or '?'} seeds (each its own calibration batch, BatchNorm "
          f"re-estimation and fine-tune; mean ± std over seeds)"
          + ("; check tasks: " + ", ".join(run.config.check_tasks) if check else ""))
    head = f"    {'held-out fitness':>17}" + (f"  {'check tasks':>17}" if check else "")
    print(head + "  criterion")
    order = sorted(rows, key=lambda r: (not r.comparable, -(r.fitness.mean or 0.0)))
    for r in order:
        mark = {"formula": "*", "variant": "+", "seed": "s"}.get(r.kind, " ")
        note = f"  ({r.reason})" if r.reason else (f"  (n/a on {', '.join(r.not_applicable)})" if r.not_applicable
                                                    else "")
        cell = f"{r.fitness.text():>17}" + (f"  {r.check.text():>17}" if check else "")
        # hall-of-fame rows as the hall of fame prints them (simplified)
        name = Formula.parse(r.name).simplified.text if r.kind != "baseline" else r.name
        where = f" ({r.allocation})" if r.allocation else ""
        print(f"  {mark} {cell}  {name}{where}{note}")
    winner, classic = run.best, run.best_rescored_classic
    won = run.winner_rescored
    random = next((r for r in rows if r.name == RANDOM and r.allocation == won.allocation), None)
    parts = [f"winner (the best on validation): {winner.formula.simplified.text} {won.fitness.text()}"]
    if classic is not None:
        parts.append(f"vs best classic {classic.label} {classic.fitness.text()} "
                     f"({won.fitness.mean - classic.fitness.mean:+.4f})")
    if random is not None and random.fitness.mean is not None:
        parts.append(f"vs random {won.fitness.mean - random.fitness.mean:+.4f}")
    print("; ".join(parts) + "   (* = hall of fame, + = the winner under another allocation, s = the best seed)")
    print(f"verdict ({run.config.regime}; paired by seed, 95% intervals):")
    for line in verdicts(rows, winner.text):
        print(f"  {line}")
    print_evolution_gain(run)


def print_evolution_gain(run) -> None:
    """The search's own contribution (the winner against the best seed, both chosen on validation, paired on
    held-out data) and the winner's curse (what validation promised minus what held-out data paid)."""
    from prunevo.primitives import Formula

    seed, gain, curse = (run.evolution or {}).get("best_seed"), run.evolution_gain, run.winners_curse
    if not seed or gain is None:
        if run.rescored:
            print("evolution gain: not measured (a run re-scored before prunevo measured it; "
                  "'prunevo show RUN --rescore' measures it)")
        return
    where = f" ({seed['allocation']})" if seed.get("allocation") else ""
    name = seed["name"] if seed["kind"] == "baseline" else Formula.parse(seed["name"]).simplified.text
    draws = len(seed.get("draws") or [0])
    if gain.n > 1 and gain.low == gain.high == 0.0:
        sign = " (the same selection on every seed: the search added nothing)"
    elif gain.significant:
        sign = " (the search beat its seeds)" if gain.mean > 0 else " (the best seed is the better choice)"
    else:
        sign = " (not significant: the best seed is as good a choice)"
    print(f"evolution gain: winner vs the best seed {name}{where}, chosen on validation as the winner is "
          f"({draws} draw{'s' if draws != 1 else ''}): {gain.pp()} on held-out data{sign}")
    if curse:
        shown = "; ".join(f"{who} {100 * value:+.1f} pp" for who, value in curse.items())
        print(f"winner's curse (validation fitness - held-out fitness): {shown}")
