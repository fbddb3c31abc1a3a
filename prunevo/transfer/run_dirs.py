"""Criteria from what users name (classic names, formula text, exports, run directories), and what transfer reads
from a run directory: its winner, the setting its search pruned in, and the regime its formula was evolved for."""
from __future__ import annotations

from pathlib import Path

from prunevo.errors import RunError
from prunevo.primitives.formula import Formula
from prunevo.pruning.criteria import BASELINE_NAMES, FormulaCriterion, as_criterion
from prunevo.runs.result import load_run


def criteria_from(specs: list, seed: int = 0) -> list:
    """Criteria from classic names, Torch-Pruning names (``tp-l2``...), ``random``, formula text, .json/.txt
    exports, run directories (their best formula), Formula objects or criteria."""
    out = []
    for spec in specs:
        if isinstance(spec, (str, Path)) and spec not in BASELINE_NAMES and Path(spec).is_dir():
            best = load_run(spec).best.formula  # the winner: the best on validation
            out.append(FormulaCriterion(Formula(best.tree, name=f"best of {Path(spec).name}")))
        else:
            out.append(as_criterion(str(spec) if isinstance(spec, Path) else spec, seed))
    return out


def run_settings(run_dir: str | Path) -> dict:
    """TransferConfig values (by path, for ``configs.build``) that prune the network a search ran on the way its
    fitness did (``prunevo apply RUN_DIR``): its model, checkpoint, data, target, allocation, group reduction
    and fine-tune epochs.  Raises RunError for a run that is not a search on one user's network."""
    run = load_run(run_dir)
    tasks = run.config.task_list()
    if len(tasks) != 1:
        raise RunError(f"{run_dir} searched on {len(tasks)} tasks; 'prunevo apply RUN_DIR' takes a run on one network "
                       f"('prunevo evolve --model ...'); allowed: --formula {run_dir} with --model and the other "
                       f"options")
    (task,) = tasks
    if task.checkpoint is None:
        raise RunError(f"{run_dir}'s task {task.name} trains its own base net, which is not a file to prune; allowed: "
                       f"--formula {run_dir} with --model and --checkpoint (a model from 'prunevo train')")
    values = {"setup.model": task.model, "setup.dataset": task.dataset, "setup.checkpoint": task.checkpoint,
              "setup.stem": task.stem, "setup.image_size": task.image_size, "setup.data_root": run.config.data_root,
              "allocation": task.allocation, "finetune.epochs": task.finetune.epochs,
              "group_reduction": task.prune.group_reduction, "domino": task.prune.domino,
              "max_layer_ratio": task.prune.max_layer_ratio}
    if task.target_macs is not None:
        values["target_macs"] = task.target_macs
    else:
        values["channel_ratio"] = task.prune.ratio
    if task.search is not None:
        values.update({"search.candidates": task.search.candidates, "search.samples": task.search.samples,
                       "search.finetune_epochs": task.search.finetune_epochs})
    return {k: v for k, v in values.items() if v is not None}


def regime_note(spec, regime: str, finetune_epochs: float) -> str | None:
    """For a run directory: which regime its formula was evolved for, and a warning when it is applied in another
    (``regime``, with ``finetune_epochs``): a formula evolved one-shot is no evidence about fine-tuning, and vice
    versa.  None for any other criterion spec."""
    if not isinstance(spec, (str, Path)) or spec in BASELINE_NAMES or not Path(spec).is_dir():
        return None
    evolved = load_run(spec).config.regime
    note = f"the formula of {spec} was evolved for the {evolved} regime"
    if evolved != regime:
        return (f"warning: {note}, and is applied here in the {regime} regime "
                f"({finetune_epochs:g} fine-tune epochs): its fitness says little about this one")
    return note
