"""``prunevo apply``: prune a model with one criterion, fine-tune it, save it and report before/after.

The output directory gets
- ``pruned_model.pt2``: the pruned network as a ``torch.export`` program; load it with only PyTorch:
  ``torch.export.load(path).module()``;
- ``pruned_weights.pt``: weights-only file (config, kept channels, state dict); rebuild the model with
  ``prunevo.transfer.load_pruned(path)`` (needs prunevo, never unpickles code);
- ``pruned_model.pt``: the whole module pickled by ``torch.save``; ``torch.load(path, weights_only=False)``
  needs torchvision/prunevo importable and trust in the file;
- ``report.json`` and ``report.md``.
"""
from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.pruning.groups import find_groups
from prunevo.pruning.layers import remove_units
from prunevo.pruning.physical import prune_model
from prunevo.transfer.report import apply_markdown
from prunevo.transfer.session import ApplyResult, PruneRecord, TransferConfig, TransferSession
from prunevo.transfer.setup import resolved_stem
from prunevo.utils import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text, load_state
from prunevo.zoo.models import build_model, user_module_file

log = logging.getLogger(__name__)
PRUNED_FORMAT = "prunevo-pruned/2"  # /2: channel cycles and removed layers
READABLE_FORMATS = ("prunevo-pruned/1", PRUNED_FORMAT)


def save_pruned(out_dir: Path, model: nn.Module, session: TransferSession, record: PruneRecord,
                export: bool = True) -> list[str]:
    """Write the pruned model in the three forms described above (``export=False``: no .pt2); returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    stem = resolved_stem(session.config.setup.model, session.config.setup.stem, session.input_shape[1])
    atomic_torch_save(out_dir / "pruned_weights.pt", {
        "format": PRUNED_FORMAT, "model": _portable(session.config.setup.model), "module_file": user_module_file(
            session.config.setup.model), "num_classes": session.data.num_classes,
        "input_shape": list(session.input_shape), "stem": stem or "auto",
        "cycles": record.cycles, "removed": record.removed, "ignore_layers": list(session.config.ignore_layers),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    })
    written = ["pruned_weights.pt"]
    try:
        atomic_torch_save(out_dir / "pruned_model.pt", model)
        written.append("pruned_model.pt")
    except (pickle.PicklingError, AttributeError, TypeError) as exc:  # a lambda or local class in a user's model
        log.warning("the pruned model cannot be pickled as a whole (%s: %s); pruned_model.pt2 and "
                    "pruned_weights.pt hold it", type(exc).__name__, exc)
    if not export:
        return written
    try:
        example = session.example.expand(2, -1, -1, -1).contiguous()  # batch 1 would be specialized
        program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        atomic_write_bytes(out_dir / "pruned_model.pt2", buffer.getvalue())
        written.append("pruned_model.pt2")
    except Exception as exc:  # export does not support every model; the other two files still load
        log.warning("torch.export could not export the pruned model (%s: %s)", type(exc).__name__, exc)
    return written


def _portable(model: str) -> str:
    """The model name as it reads from any working directory: whole-model and module files made absolute."""
    if model.endswith((".pt", ".pth")) or Path(model).is_file():
        return str(Path(model).resolve())
    if ":" in model and model.rsplit(":", 1)[0].endswith(".py"):
        module, function = model.rsplit(":", 1)
        return f"{Path(module).resolve()}:{function}"
    return model


def load_pruned(path: str | Path) -> nn.Module:
    """Rebuild a pruned model from ``pruned_weights.pt``: weights-only loading, no dataset needed.  Raises
    ModelError for a missing, corrupt or foreign file."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, corrupt or pickled-code files
        raise ModelError(f"{path} is not a readable pruned-weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise ModelError(f"{path} is not a prunevo pruned-weights file ({PRUNED_FORMAT})")
    shape = tuple(data["input_shape"])
    model = build_model(data["model"], data["num_classes"], shape, data["stem"], data.get("module_file")).eval()
    example = torch.zeros(1, *shape)
    remove_units(model, data.get("removed", []))
    cycles = data["cycles"] if "cycles" in data else [data["keep"]]
    for kept in cycles:  # replay each channel-pruning cycle on the model it was chosen for
        groups = find_groups(model, example, keep_layers=tuple(data.get("ignore_layers", ())))
        masks = []
        for g in groups:
            mask = torch.zeros(g.size, dtype=torch.bool)
            mask[torch.as_tensor(kept.get(g.root, list(range(g.size))), dtype=torch.long)] = True
            masks.append(mask)
        prune_model(model, groups, masks, example)
    load_state(model, data["state_dict"])
    return model.eval()


def apply_formula(criterion, config: TransferConfig, out_dir: str | Path | None = None, *, seed: int = 0,
                  progress: bool = False, session: TransferSession | None = None) -> tuple[nn.Module, ApplyResult]:
    """Prune ``config.setup.model`` with ``criterion`` (a Formula, formula text or file, a run directory, a
    classic or Torch-Pruning name, ``random``, or any object that follows the ``Criterion`` protocol) using
    ``config.strategy``.

    With ``out_dir``, the pruned model and ``report.json``/``report.md`` are written there.
    Raises FormulaError (bad criterion text), DataError, ModelError (a model the pruner cannot handle, or
    physical pruning that does not compute what the masked model does), TargetUnreachable or PrunevoError.
    """
    from prunevo.transfer.session import criteria_from, regime_note

    note = regime_note(criterion, config)
    if note is not None and note.startswith("warning"):
        log.warning(note)
    (criterion,) = criteria_from([criterion], seed)  # bad text fails here, before data and model are loaded
    session = session or TransferSession(config, progress=progress)
    model, result, record = session.run(criterion, seed)
    if out_dir is not None:
        out = Path(out_dir)
        files = save_pruned(out, model, session, record)
        report = {"config": config.to_dict(), "result": result.to_dict(), "files": files,
                  "base_checkpoint": session.meta, "augmentation": session.data.augmentation, "regime_note": note}
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", apply_markdown(result, config.to_dict(), session.data.augmentation, note))
    return model, result
