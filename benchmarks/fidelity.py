"""Fitness fidelity per regime: how well each proxy fitness ranks pruning criteria the way target-like
networks on held-out data do, and at what CPU cost.

A fixed panel of criteria (every classic criterion, every Torch-Pruning importance, random, and seeded
samples of the grammar whose selections differ on the default tasks) is scored by

* **references**, one per regime, on target-like networks and data that no proxy uses: CIFAR ResNet-20
  and ResNet-56, a VGG-style net and MobileNetV2 (CIFAR stem) on Fashion-MNIST (28 px) and Imagenette at
  32 px, each pruned (uniform allocation) to 25% and to 50% of the MACs and measured on 2,000
  class-stratified held-out images (the test split; the half of Imagenette's val/ that fitness never
  reads): **one-shot** (BatchNorm re-estimated on 2 batches of 256 training images, no fine-tune) and, on
  ResNet-20, after **1 epoch of fine-tuning** on 2,000 training images (the short fine-tune regime), and,
  on ResNet-20 and the VGG on Fashion-MNIST, **one-shot + reconstruction** (``reconstruct=1``: the layers
  that read removed channels refitted on the task's calibration images before BatchNorm is re-estimated);
* **proxies**: cheap one-shot tasks that a fitness could use, on other data: the ``make run`` tasks
  before issue 19 (8 px digits), the same networks on the embedded digits upsampled to 32 px (ResNet-20
  at 50% is today's default), and on MNIST; and the ``--preset transfer`` tasks.  Co-evolved proxies
  (several tasks in one geometric mean) are computed from their tasks' values, and their CPU cost is the
  sum of their tasks'.

For every proxy and every reference group it prints Spearman's rho over the panel with a 95% bootstrap
interval (scipy.stats.bootstrap, the panel resampled), the CPU-seconds per criterion evaluation and rho per
CPU-second; then the matrix of rho between the references themselves (how well one target-like task
predicts another: the ceiling, and the case for real-data fitness tasks); then, per regime, how far apart
the criteria are (the named classics' best and worst, random) and how each reconstruction reference ranks
the panel against the same task one-shot (printed also after ``--only``).  Every evaluator runs on one
thread in this process, so CPU-seconds compare across rows.  Results are saved to ``-o`` after every task,
and a rerun reuses them (delete the file to measure again).

    .venv/bin/python benchmarks/fidelity.py --data-root ../shared/data -o fidelity.json
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import bootstrap, pearsonr, rankdata, spearmanr

from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.fitness.data import _stratified
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.rescore import holdout_tasks
from prunevo.fitness.task_spec import parse_task
from prunevo.fitness.tasks import prepare_task
from prunevo.primitives import Formula
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM, as_criterion
from prunevo.zoo.images import TensorImages

IMAGENETTE = "imagefolder:{root}/imagenette2"
HELD_OUT = 2000  # class-stratified held-out images per reference
# base nets: one epoch on the MNISTs (60,000 images), 8 on Imagenette at 32 px (9,469 images)
FASHION = "fashion-mnist:pretrain=1"
IMAGENETTE32 = IMAGENETTE + ":size=32,pretrain=8"
NETS = {"ResNet-20": "resnet20", "ResNet-56": "resnet56", "VGG": "small-vgg", "MobileNetV2": "mobilenet_v2"}


def _spec(net: str, data: str, options: str) -> str:
    return f"{net}@{data},{options}"


ONE_SHOT = "epochs=0,recal=2"
RECONSTRUCT = "reconstruct=1"  # the one-shot + reconstruction regime (issue 31); its twin without it is one-shot
REFERENCES = {  # group -> task specs; each measured on HELD_OUT held-out images
    "one-shot 25% MACs": [_spec(n, d, f"macs=0.25,{ONE_SHOT}") for d in (FASHION, IMAGENETTE32) for n in NETS.values()],
    "one-shot 50% MACs": [_spec(n, d, f"macs=0.5,{ONE_SHOT}") for d in (FASHION, IMAGENETTE32) for n in NETS.values()],
    "1 epoch 25% MACs": [_spec("resnet20", d, "macs=0.25,epochs=1,train=2000,recal=2") for d in (FASHION, IMAGENETTE32)],
    "1 epoch 50% MACs": [_spec("resnet20", d, "macs=0.5,epochs=1,train=2000,recal=2") for d in (FASHION, IMAGENETTE32)],
    **{f"reconstruction {int(m * 100)}% MACs": [_spec(n, FASHION, f"macs={m},{ONE_SHOT},{RECONSTRUCT}")
                                                for n in ("resnet20", "small-vgg")] for m in (0.25, 0.5)},
}

DIGITS32 = "digits:size=32"
MNIST = "mnist:val=2000,pretrain=1"
PROXY_TASKS = {  # name -> task spec, each scored once on its own validation split
    "default: small-vgg@digits 8 px": "small-vgg@digits:epochs=0,recal=1",
    "default: small-resnet@digits 8 px": "small-resnet@digits:epochs=0,recal=1",
    **{f"{n}@digits-32 {int(m * 100)}%": _spec(net, DIGITS32, f"macs={m},epochs=0,recal=1")
       for n, net in NETS.items() if n != "ResNet-56" for m in (0.25, 0.5)},
    **{f"{n}@mnist {int(m * 100)}%": _spec(net, MNIST, f"macs={m},epochs=0,recal=1")
       for n, net in NETS.items() if n in ("ResNet-20", "VGG") for m in (0.25, 0.5)},
    # a shorter base net for the make run default (ResNet-20@digits-32 50%, 40 epochs): ranked less well
    "ResNet-20@digits-32 50%, 15-epoch base": _spec("resnet20", DIGITS32, "macs=0.5,epochs=0,recal=1,pretrain=15"),
    "transfer preset: lenet5@mnist": "lenet5@mnist:macs=0.5,val=2000",
    "transfer preset: small-vgg@imagenette": "small-vgg@" + IMAGENETTE + ":size=32,macs=0.5,train=1000,allocation=global",
}
DIGITS32_ALL = [k for k in PROXY_TASKS if "@digits-32" in k]
PROXIES = {  # name -> proxy tasks co-evolved (geometric mean)
    # the first proxy's tasks also pick the panel's grammar samples (keep it first: the saved panel stays valid)
    "make run default before issue 19 (small-vgg + small-resnet, digits 8 px, 75% channels)": [
        "default: small-vgg@digits 8 px", "default: small-resnet@digits 8 px"],
    **{k: [k] for k in PROXY_TASKS if not k.startswith(("default", "transfer"))},
    "digits-32: ResNet-20 + VGG + MobileNetV2, 25%": [k for k in DIGITS32_ALL if k.endswith("25%")],
    "digits-32: ResNet-20 + VGG + MobileNetV2, 50%": [k for k in DIGITS32_ALL if k.endswith("50%")],
    "digits-32: all three nets at 25% and 50%": DIGITS32_ALL,
    "digits-32: ResNet-20 + MobileNetV2, 25% and 50%": [k for k in DIGITS32_ALL if k.startswith(("ResNet", "Mobile"))],
    "mnist: ResNet-20 + VGG, 25% and 50%": [k for k in PROXY_TASKS if "@mnist " in k],
    "digits-32 (3 nets) + mnist (2 nets), 25% and 50%": DIGITS32_ALL + [k for k in PROXY_TASKS if "@mnist " in k],
    "transfer preset (lenet5@mnist + small-vgg@imagenette, 50% MACs, fine-tuned)": [
        "transfer preset: lenet5@mnist", "transfer preset: small-vgg@imagenette"],
}


def panel(samples: int, seed: int, probe: Evaluator) -> list:
    """Every named baseline and random, then grammar samples that rank every probe task and select channels
    no earlier panel member selects."""
    criteria = [as_criterion(n) for n in (*BASELINE_NAMES, RANDOM)]
    seen = {probe.mask_plan(c).selection for c in criteria}
    pset = build_pset()
    random.seed(seed)
    named = len(criteria)
    while len(criteria) < named + samples:
        candidate = as_criterion(Formula(to_node(gen_half_and_half(pset, 1, 4))))
        plan = probe.mask_plan(candidate)
        if plan.selection is not None and not plan.not_applicable and plan.selection not in seen:
            seen.add(plan.selection)
            criteria.append(candidate)
    return criteria


def held_out(prepared, count: int = HELD_OUT):
    """The task scored on ``count`` class-stratified images of its held-out split (one fine-tune seed)."""
    data = prepared.data
    if len(data.holdout) > count:
        order = _stratified(data.holdout.targets, torch.arange(len(data.holdout)), count, 2)
        data = replace(data, holdout=TensorImages(data.holdout.x[order], data.holdout.targets[order]))
    return holdout_tasks([replace(prepared, data=data)], 1)[0]


def measure(spec: str, criteria: list, data_root: str, reference: bool) -> dict:
    """Relative accuracy per criterion (None where n/a or invalid) and the CPU-seconds of the evaluation."""
    prepared = prepare_task(parse_task(spec.format(root=data_root)), data_root)
    if reference:
        prepared = held_out(prepared)
    evaluator = Evaluator([prepared], threads_per_job=1)  # one local worker
    start = time.process_time()
    results = evaluator.evaluate(criteria, full=True)
    cpu = time.process_time() - start
    values = [r.applicable_fitness if r.valid else None for r in results]
    return {"spec": spec, "relative": values, "cpu_s": cpu, "base": prepared.base_val_accuracy,
            "images": len(prepared.data.val)}


def combine(columns: list[list]) -> list:
    """Geometric mean over tasks, per criterion (None where any task has none)."""
    return [None if any(c[i] is None or c[i] <= 0 for c in columns)
            else math.exp(sum(math.log(c[i]) for c in columns) / len(columns)) for i in range(len(columns[0]))]


def spearman(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis``: Pearson's r of the ranks (ties averaged), as ``spearmanr`` computes it,
    but for a whole batch of bootstrap resamples in one call (``spearmanr`` takes one pair at a time)."""
    return pearsonr(rankdata(a, axis=axis), rankdata(b, axis=axis), axis=axis).statistic


def rank_rho(x: list, y: list) -> float:
    """Spearman's rho over the criteria both rank (None: not ranked)."""
    pairs = np.array([(a, b) for a, b in zip(x, y) if a is not None and b is not None])
    return float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)


def rho_interval(x: list, y: list) -> tuple[float, float, float, int]:
    """Spearman's rho over the criteria both rank, with a 95% percentile bootstrap interval (the criteria
    resampled in pairs; seeded, so a rerun prints the same interval)."""
    pairs = np.array([(a, b) for a, b in zip(x, y) if a is not None and b is not None])
    res = bootstrap((pairs[:, 0], pairs[:, 1]), spearman, paired=True, vectorized=True, n_resamples=2000,
                    method="percentile", random_state=0)
    return rank_rho(x, y), float(res.confidence_interval.low), float(res.confidence_interval.high), len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder with MNIST/, FashionMNIST/ and imagenette2/")
    parser.add_argument("--samples", type=int, default=16, help="grammar samples in the panel (default: 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", metavar="SPEC", help="measure only these tasks (smoke runs)")
    parser.add_argument("-o", "--output", default="fidelity.json")
    args = parser.parse_args()
    out_path = Path(args.output)
    saved = json.loads(out_path.read_text()) if out_path.exists() else {}

    probe = Evaluator([prepare_task(parse_task(PROXY_TASKS[k])) for k in PROXIES[next(iter(PROXIES))]])
    criteria = panel(args.samples, args.seed, probe)
    names = [c.name for c in criteria]
    print(f"panel: {len(criteria)} criteria: {', '.join(names)}", flush=True)
    if saved.get("panel") != names:
        saved = {"panel": names, "tasks": {}}

    def task(spec: str, reference: bool) -> dict:
        if spec not in saved["tasks"]:
            saved["tasks"][spec] = measure(spec, criteria, args.data_root, reference)
            out_path.write_text(json.dumps(saved, indent=1))
            t = saved["tasks"][spec]
            print(f"  measured {spec}: base {t['base']:.4f} on {t['images']} images, "
                  f"{t['cpu_s'] / len(names):.2f} CPU-s/eval", flush=True)
        return saved["tasks"][spec]

    wanted = set(args.only or [])
    # one-shot references and the one-shot proxies first (cheap); then the fine-tuned references; the transfer
    # preset's proxies (a 15-epoch Imagenette base net) last
    one_shot = [(s, True) for group, specs in REFERENCES.items() if group.startswith("one-shot") for s in specs]
    fine_tuned = [(s, True) for group, specs in REFERENCES.items() if not group.startswith("one-shot") for s in specs]
    transfer = [(s, False) for k, s in PROXY_TASKS.items() if k.startswith("transfer")]
    todo = one_shot + [(s, False) for k, s in PROXY_TASKS.items() if not k.startswith("transfer")] + fine_tuned
    todo += transfer
    for spec, reference in todo:
        if not wanted or spec in wanted:
            task(spec, reference)
    if not wanted:
        report(saved, names)
    regimes(saved, names)


def top_regret(values: list, reference: list, k: int = 3) -> float:
    """Mean reference value of the proxy's ``k`` best criteria minus the reference's best: what evolution, which
    keeps the proxy's best, loses on the target (0 = it picks the target's best)."""
    both = [i for i, (a, b) in enumerate(zip(values, reference)) if a is not None and b is not None]
    top = sorted(both, key=lambda i: -values[i])[:k]
    return sum(reference[i] for i in top) / len(top) - max(reference[i] for i in both)


def report(saved: dict, names: list[str]) -> None:
    """Print every table from the saved measurements; a proxy or reference group with an unmeasured task is
    listed as not measured."""
    tasks = saved["tasks"]
    missing = [s for group in REFERENCES.values() for s in group if s not in tasks]
    references = {g: combine([tasks[s]["relative"] for s in specs]) for g, specs in REFERENCES.items()
                  if all(s in tasks for s in specs)}
    print(f"\nrho of each proxy with each reference group (combined: geometric mean over its tasks), and the "
          f"top-3 regret (reference value of the proxy's 3 best criteria minus the reference's best); "
          f"n = {len(names)} criteria", flush=True)
    candidates = {p: [PROXY_TASKS[k] for k in keys] for p, keys in PROXIES.items()}
    candidates.update(REAL_DATA_PROXIES)
    for proxy, specs in candidates.items():
        if any(s not in tasks for s in specs):
            print(f"{proxy}\n    not measured", flush=True)
            continue
        held = [g for g in references if proxy not in REAL_DATA_PROXIES
                or (g.startswith("one-shot") and any("imagenette" in s for s in REFERENCES[g]))]
        values = combine([tasks[s]["relative"] for s in specs])
        per_eval = sum(tasks[s]["cpu_s"] for s in specs) / len(names)
        cells = []
        for group in held:
            ref = references[group] if proxy not in REAL_DATA_PROXIES else imagenette_reference(tasks, group)
            rho, low, high, n = rho_interval(values, ref)
            cells.append(f"{group}: {rho:+.2f} [{low:+.2f}, {high:+.2f}], top-3 regret {top_regret(values, ref):+.3f}")
        one_shot = [rank_rho(values, references[g]) for g in references if g.startswith("one-shot")]
        print(f"{proxy}\n    {'; '.join(cells)}\n    {per_eval:.3f} CPU-s/eval; one-shot rho per CPU-s "
              f"{sum(one_shot) / len(one_shot) / per_eval:+.1f}", flush=True)
    print("\nrho between reference tasks (rows predict columns), and their CPU-s/eval:", flush=True)
    specs = [s for group in REFERENCES.values() for s in group if s in tasks]
    if missing:
        print(f"  (not measured: {', '.join(missing)})", flush=True)
    for a in specs:
        row = " ".join(f"{rank_rho(tasks[a]['relative'], tasks[b]['relative']):+.2f}" for b in specs)  # no interval
        print(f"  {a[:70]:<70} {tasks[a]['cpu_s'] / len(names):6.2f}  {row}", flush=True)


def regimes(saved: dict, names: list[str]) -> None:
    """Per measured reference task: how far apart the panel's criteria are (relative accuracy of the best and
    worst named classic, random, the best of the panel), and for each reconstruction task, Spearman's rho
    with its one-shot twin (the same network, data and target without ``reconstruct=1``)."""
    tasks = saved["tasks"]
    named = [i for i, n in enumerate(names) if n in BASELINE_NAMES]
    at = names.index(RANDOM)
    print("\nspread of the panel per reference task (relative top-1: pruned / unpruned), "
          f"{len(named)} named classics:", flush=True)
    print("| reference | best classic | worst classic | classics' spread | random | best of panel |")
    print("|---|---|---|---:|---:|---:|")
    for spec in (s for group in REFERENCES.values() for s in group if s in tasks):
        values = tasks[spec]["relative"]
        classics = sorted(((values[i], names[i]) for i in named if values[i] is not None), reverse=True)
        if not classics:
            continue
        best = max(v for v in values if v is not None)
        rand = "n/a" if values[at] is None else f"{values[at]:.3f}"
        print(f"| {spec} | {classics[0][1]} {classics[0][0]:.3f} | {classics[-1][1]} {classics[-1][0]:.3f} | "
              f"{classics[0][0] - classics[-1][0]:.3f} | {rand} | {best:.3f} |", flush=True)
    for spec in (s for s in tasks if f",{RECONSTRUCT}" in s):
        twin = spec.replace(f",{RECONSTRUCT}", "")
        if twin in tasks:
            rho, low, high, n = rho_interval(tasks[twin]["relative"], tasks[spec]["relative"])
            print(f"rho(one-shot, reconstruction) on {twin}: {rho:+.2f} [{low:+.2f}, {high:+.2f}] over {n} criteria",
                  flush=True)


# one-shot references on Fashion-MNIST as fitness tasks: scored against the Imagenette references only (a
# network/dataset pair they never see)
REAL_DATA_PROXIES = {
    "real data: ResNet-20@fashion 25% + 50%": [s for g in REFERENCES if g.startswith("one-shot")
                                               for s in REFERENCES[g] if s.startswith("resnet20@fashion")],
    "real data: ResNet-20 + VGG @fashion 25% + 50%": [s for g in REFERENCES if g.startswith("one-shot")
                                                      for s in REFERENCES[g]
                                                      if s.startswith(("resnet20@fashion", "small-vgg@fashion"))],
    "real data: all four nets @fashion 25% + 50%": [s for g in REFERENCES if g.startswith("one-shot")
                                                    for s in REFERENCES[g] if "@fashion" in s],
}


def imagenette_reference(tasks: dict, group: str) -> list:
    """The group's Imagenette references combined: what a Fashion-MNIST proxy never saw."""
    return combine([tasks[s]["relative"] for s in REFERENCES[group] if "imagenette" in s])


if __name__ == "__main__":
    main()
