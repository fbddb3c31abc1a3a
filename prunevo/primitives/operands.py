"""The statistics of one prunable layer that a formula reads (the operands of the grammar)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from prunevo.primitives.registry import OPERAND_SPECS


@dataclass
class LayerStats:
    """Per-channel statistics of one layer, gathered on a class-stratified calibration batch.

    Shapes (C output channels, N samples, S spatial positions, K classes):
    ``W`` [C, D] the channel's filter; ``Wn`` [C, D'] the next layers' weights that read the channel;
    ``F`` [C, N, S] the channel's activation (ReLU of its BatchNorm output); ``G`` [C, N, S] the gradient
    of the loss w.r.t. that activation; ``gamma``/``beta`` [C] BatchNorm scale/shift (1 and 0 for a layer
    without BatchNorm); ``macs`` [C] the MACs one channel of the layer's group costs, relative to the
    network's mean over groups (set by ``pruning.calibration``; constant within a layer); ``labels`` [N] the
    class of each sample.  ``missing`` names the operands this layer
    does not really have and that hold placeholders (``gamma``/``beta`` without BatchNorm, ``G`` when no
    gradient reaches the layer, ``Wn`` when no consumer reads one input row per channel): a criterion that
    cannot rank channels because it reads one of them does not apply to the layer.
    """

    W: torch.Tensor
    Wn: torch.Tensor
    F: torch.Tensor
    G: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    missing: frozenset[str] = frozenset()
    macs: torch.Tensor | None = None  # [C]; None until the calibration sets it
    # F and G were reduced while calibration batches streamed by (see ``accumulators``): they hold no
    # samples, and every feature-map reduction of the formulas to score is already in ``vectors``
    streamed: bool = False
    labels_onehot: torch.Tensor = field(init=False, repr=False)
    # per-channel values of subtrees already scored on this layer, shared by every formula (see ``evaluate``)
    vectors: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.labels_onehot = torch.nn.functional.one_hot(self.labels.long(), self.num_classes).to(self.F.dtype)

    @property
    def channels(self) -> int:
        return self.W.shape[0]

    def operand(self, name: str) -> torch.Tensor:
        """The value of operand ``name``: a field, or computed by its registered ``statistic``.

        Raises:
            RuntimeError: ``macs`` before calibration sets it, or a streamed ``F``/``G``.
        """
        spec = OPERAND_SPECS.get(name)
        if spec is not None and spec.statistic is not None:
            return spec.statistic(self)
        if name == "macs" and self.macs is None:
            raise RuntimeError("macs is unknown for statistics gathered without their network's MACs "
                               "(pruning.calibration sets it)")
        if self.streamed and name in ("F", "G"):
            raise RuntimeError(f"{name} was streamed: score formulas through Calibration.stats_for_formula, which "
                               f"accumulates their feature-map reductions first")
        return getattr(self, name)
