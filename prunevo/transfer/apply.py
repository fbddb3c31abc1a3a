"""``prunevo apply``: prune a model with one criterion, fine-tune it, save it and report before/after.

The output directory gets
- ``pruned_model.pt2``: the pruned network as a ``torch.export`` program; load it with only PyTorch:
  ``torch.export.load(path).module()``;
- ``pruned_weights.pt``: weights-only file (config, kept channels, state dict); rebuild the model with
  ``prunevo.transfer.load_pruned(path)`` (needs prunevo, never unpickles code);
- ``pruned_model.pt``: the whole module pickled by ``torch.save``; ``torch.load(path, weights_only=False)``
  needs torchvision/prunevo importable and trust in the file;
- ``report.json`` and ``report.md``.

The model files hold the weights in the floating type the user's came in (float16 or bfloat16 weights are
pruned in float32 and saved as they were given); ``pruned_model.pt2`` stays float32 when torch.export cannot
export the other type.  Each file but the ``.pt2`` is accepted as ``--model`` again.
"""
from __future__ import annotations

import copy
import io
import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from prunevo.errors import first_line
from prunevo.pruning.saved import PRUNED_FORMAT, READABLE_FORMATS, load_pruned  # noqa: F401  (public here)
from prunevo.transfer.config import TransferConfig
from prunevo.transfer.report import apply_markdown
from prunevo.transfer.results import ApplyResult, PruneRecord
from prunevo.transfer.session import TransferSession
from prunevo.transfer.setup import resolved_stem
from prunevo.utils import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from prunevo.zoo.models import SOURCE_DTYPE_ATTR, source_dtype, user_module_file, weights_dtype

log = logging.getLogger(__name__)


def save_pruned(out_dir: Path, model: nn.Module, session: TransferSession, record: PruneRecord,
                export: bool = True) -> list[str]:
    """Write the pruned model in the three forms described above (``export=False``: no .pt2); returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = source_dtype(session.model)
    model = _as_given(model.cpu().eval(), dtype)
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
    program = _export(model, session.example)
    if program is not None:
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        atomic_write_bytes(out_dir / "pruned_model.pt2", buffer.getvalue())
        written.append("pruned_model.pt2")
    return written


def _as_given(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The model as it is saved: in the user's floating type (a copy, when it is not float32), without
    prunevo's record of that type."""
    if dtype == torch.float32 and not hasattr(model, SOURCE_DTYPE_ATTR):
        return model
    model = copy.deepcopy(model).to(dtype)
    model.__dict__.pop(SOURCE_DTYPE_ATTR, None)
    return model


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram | None:
    """``model`` as a torch.export program in its own floating type, else in float32, else None (each fallback
    said in a warning)."""
    dtype = weights_dtype(model.parameters()) or torch.float32
    try:
        return _exported(model, example.to(dtype))
    except Exception as exc:  # export does not support every model or type; the other two files still load
        failure = exc
    if dtype != torch.float32:
        try:
            program = _exported(copy.deepcopy(model).float(), example)
        except Exception as exc:  # noqa: BLE001  not the type, then: say the float32 failure
            failure = exc
        else:
            log.warning("pruned_model.pt2 is float32: torch.export could not export the %s model (%s: %s); "
                        "pruned_model.pt and pruned_weights.pt are %s", _name(dtype), type(failure).__name__,
                        first_line(failure), _name(dtype))
            return program
    log.warning("torch.export could not export the pruned model (%s: %s)", type(failure).__name__, failure)
    return None


def _exported(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    example = example.expand(2, -1, -1, -1).contiguous()  # batch 1 would be specialized
    return torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _portable(model: str) -> str:
    """The model name as it reads from any working directory: whole-model and module files made absolute."""
    if model.endswith((".pt", ".pth")) or Path(model).is_file():
        return str(Path(model).resolve())
    if ":" in model and model.rsplit(":", 1)[0].endswith(".py"):
        module, function = model.rsplit(":", 1)
        return f"{Path(module).resolve()}:{function}"
    return model


def apply_formula(criterion, config: TransferConfig, out_dir: str | Path | None = None, *, seed: int = 0,
                  progress: bool = False, session: TransferSession | None = None) -> tuple[nn.Module, ApplyResult]:
    """Prune ``config.setup.model`` with a criterion, as ``config`` says (``prunevo apply``).

    Args:
        criterion: a Formula, formula text or file, a run directory (its winner), a classic or Torch-Pruning
            name, ``random``, or any object that follows the ``Criterion`` protocol.
        config: the model and data, the target (MACs share, channel ratio or latency), the strategy and the
            recovery (BatchNorm re-estimation, fine-tune).
        out_dir: where to write the pruned model (``pruned_weights.pt``, ``pruned_model.pt``) and
            ``report.json``/``report.md``; None: nothing is written.
        seed: the seed of calibration images, random choices and fine-tuning.
        progress: progress bars.
        session: a ``TransferSession`` already loaded for ``config`` (to prune one model many times).

    Returns:
        The pruned model (channels physically removed) and what was measured.

    Raises:
        FormulaError: bad criterion text.
        DataError: missing data.
        ModelError: a model the pruner cannot handle, or a physically pruned model that does not compute what
            the masked one does.
        TargetUnreachable: the target cannot be met.
        NotApplicableError: the criterion cannot rank this model's channels (it reads what the model lacks).

    Example (a small VGG with random weights, no data download, to half its MACs by the L1 norm):
        >>> from prunevo import FitConfig, Setup, TransferConfig, apply_formula
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> model, result = apply_formula("l1(W)", config)
        >>> round(result.macs_fraction, 2), result.after.params < result.before.params
        (0.5, True)
    """
    from prunevo.transfer.run_dirs import criteria_from, regime_note

    note = regime_note(criterion, config.regime, config.finetune.epochs)
    if note is not None and note.startswith("warning"):
        log.warning(note)
    (criterion,) = criteria_from([criterion], seed)  # bad text fails here, before data and model are loaded
    session = session or TransferSession(config, progress=progress)
    model, result, record = session.run(criterion, seed)
    if out_dir is not None:
        out = Path(out_dir)
        files = save_pruned(out, model, session, record)
        left_whole = [str(w) for w in session.left_whole]  # groups not pruned, and why (pruning.prunable)
        report = {"config": config.to_dict(), "result": result.to_dict(), "files": files,
                  "base_checkpoint": session.meta, "augmentation": session.data.augmentation, "regime_note": note,
                  "left_whole": left_whole}
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", apply_markdown(result, config.to_dict(), session.data.augmentation, note,
                                                            left_whole))
    return model, result
