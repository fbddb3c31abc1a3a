"""What a transfer session prunes and how: the model and data (``setup``), the strategy, the target, the
allocation, the fine-tune budget and the measurements, with each default in one place."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunevo.errors import PrunevoError
from prunevo.pruning.allocation import RANKING_OF, SearchSpec, check_allocation
from prunevo.pruning.latency import LatencySpec
from prunevo.pruning.layers import UNIT_REDUCTIONS
from prunevo.pruning.ranking import PruneSpec
from prunevo.pruning.reconstruct import Reconstruction
from prunevo.pruning.target import DEFAULT_TARGET_MACS, check_macs_target
from prunevo.training import Accelerator, FitConfig
from prunevo.training.regimes import regime_of
from prunevo.transfer.run_dirs import run_settings
from prunevo.transfer.setup import Setup
from prunevo.transfer.variants import STRATEGIES, variant_name

# round_to=None: tensor-core kernels want multiples of 8 on CUDA; the CPU gains nothing from rounding
ROUND_TO = {"cpu": 1, "cuda": 8}
# calibration_batch=None: ResNet-50 at 224 px stays near 3 GB with 8 on the CPU, no slower than larger chunks
CALIBRATION_BATCH = {"cpu": 8, "cuda": 32}

# the strategies that remove channels, whose readers reconstruction refits
RECONSTRUCTS = ("channel", "iterative")
# what a session loads or measures once: a variant of it cannot change them
SESSION_FIELDS = ("setup", "accelerator", "domino", "calibration_samples", "calibration_batch", "latency",
                  "ignore_layers")


@dataclass(frozen=True, kw_only=True)
class TransferConfig:
    """Everything that defines a transfer experiment except the criterion and the seed.

    A session (``transfer.session.TransferSession``) loads the model and data once and prunes them with any
    number of criteria and seeds under these settings; ``apply_formula`` and ``compare_criteria`` take one.
    Frozen and keyword-only; every default is here (the CLI's options read them, ``cli_options``).

    At most one target; none given means ``target_macs = DEFAULT_TARGET_MACS``.

    Attributes:
        setup: the model, dataset, checkpoint and image size (``transfer.setup.Setup``).
        target_macs: share of the unpruned network's MACs that remains, in (0, 1].
        channel_ratio: or the share of channels removed, in [0, 1) (per layer, or across layers under
            ``allocation="global"``).
        target_latency: or the share of the unpruned model's measured latency that remains, in (0, 1], at
            ``latency``'s first device and batch size (channel and layer strategies).
        strategy: ``channel`` (one shot), ``layer`` (remove whole blocks or layers), ``iterative`` (``cycles``
            prune/retrain cycles; ``finetune.epochs`` is the total budget, split evenly) or ``unstructured``
            (IMP: global weight magnitude with ``torch.nn.utils.prune``, to a sparsity of ``channel_ratio`` or
            ``1 - target_macs``).
        allocation: how many channels each layer keeps: ``uniform`` (the same share everywhere), ``global``
            (one ranking over all layers) or ``random-search`` (the best of ``search.candidates`` random
            per-layer ratios, EagleEye's adaptive BatchNorm search).
        search: the random search's candidates, images and fine-tune (``pruning.allocation.SearchSpec``).
        cycles: prune/retrain cycles of the iterative and unstructured strategies.
        layer_reduction: how the layer strategy turns a block's filter scores into one (``mean``...).
        max_layer_ratio: the most of one group's channels any allocation removes, in (0, 1).
        ignore_layers: layers whose output channels are never pruned, besides the output layer
            (Torch-Pruning's ``ignored_layers``).
        round_to: every pruned group keeps a multiple of this many channels (Torch-Pruning's ``round_to``);
            None: 8 on CUDA, whose tensor-core kernels want multiples of 8, and 1 on the CPU.
        group_reduction: how coupled layers' scores combine into one per group channel: mean, sum or max.
        domino: ``o`` (Domino-o: the coupled layers' output-channel scores) or ``io`` (plus the consumers'
            input-channel scores).
        calibration_samples: class-stratified images the criterion's statistics are gathered on.
        calibration_batch: images per calibration pass; memory holds one chunk's activations whatever
            ``calibration_samples`` is.  None: 8 on the CPU (ResNet-50 at 224 px stays near 3 GB), 32 on CUDA;
            reconstruction then passes as many as keep a layer's regression rows under
            ``pruning.reconstruct.ROWS_MEMORY``.
        finetune: the fine-tune after pruning (``training.FitConfig``; ``epochs=0`` is one-shot: BatchNorm
            re-estimation only).
        reconstruct: before BatchNorm is re-estimated, refit the layers that read removed channels by least
            squares so that they reproduce their unpruned outputs on the calibration images
            (``pruning.reconstruct``; channel and iterative strategies): the regime "one-shot + reconstruction".
        reconstruction: its ridge penalty and sampled positions (``pruning.reconstruct.Reconstruction``).
        accelerator: device, precision and compilation.
        latency: what to measure latency on (``pruning.latency.LatencySpec``); None: not measured.

    Raises:
        PrunevoError: two targets, a target out of range, an unknown strategy, allocation, reduction or
            Domino variant, a strategy that cannot take the target, or ``round_to`` outside [1, 1024]; raised
            on construction, before any data or weights are loaded.

    Example:
        >>> from prunevo import Setup, TransferConfig
        >>> config = TransferConfig(setup=Setup(model="resnet20", dataset="digits"), target_macs=0.5)
        >>> config.variant, config.regime, config.rounding  # on the CPU: no rounding
        ('uniform', 'short fine-tune', 1)
        >>> TransferConfig(setup=Setup(model="resnet20"), strategy="magic")
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: unknown strategy 'magic'; allowed: channel, layer, iterative, unstructured
    """

    setup: Setup
    target_macs: float | None = None  # share of the original MACs that remains (DEFAULT_TARGET_MACS when no target)
    channel_ratio: float | None = None  # or: share of channels removed (layer-wise or globally)
    target_latency: float | None = None  # or: share of the original latency (device and batch: latency_key)
    strategy: str = "channel"
    allocation: str = "uniform"  # uniform | global | random-search (channel and iterative strategies)
    search: SearchSpec = field(default_factory=SearchSpec)
    cycles: int = 3
    layer_reduction: str = "mean"
    max_layer_ratio: float = PruneSpec.max_layer_ratio  # PruneSpec's defaults: one place for each
    # layers whose output channels are never pruned besides the output layer (Torch-Pruning's ignored_layers)
    ignore_layers: tuple[str, ...] = ()
    # every pruned group keeps a multiple of round_to channels (Torch-Pruning's round_to); None: 8 on CUDA,
    # whose tensor-core kernels want multiples of 8, and 1 on the CPU
    round_to: int | None = None
    group_reduction: str = PruneSpec.group_reduction
    domino: str = PruneSpec.domino
    calibration_samples: int = 256
    # images per calibration pass: feature maps and gradients are reduced chunk by chunk, so memory holds
    # one chunk's activations whatever calibration_samples is; None: 8 on the CPU (ResNet-50 at 224 px
    # stays near 3 GB and runs no slower than larger chunks), 32 on CUDA
    calibration_batch: int | None = None
    finetune: FitConfig = field(default_factory=FitConfig)  # FitConfig's defaults are the fine-tune's
    reconstruct: bool = False  # refit the layers that read removed channels (pruning.reconstruct)
    reconstruction: Reconstruction = field(default_factory=Reconstruction)
    accelerator: Accelerator = field(default_factory=Accelerator)
    latency: LatencySpec | None = field(default_factory=LatencySpec)

    def __post_init__(self) -> None:
        targets = [t for t in (self.target_macs, self.channel_ratio, self.target_latency) if t is not None]
        if not targets:  # no target given: the default one (frozen: set once, here)
            object.__setattr__(self, "target_macs", DEFAULT_TARGET_MACS)
            targets = [DEFAULT_TARGET_MACS]
        if len(targets) != 1:
            raise PrunevoError("give exactly one of {param:target_macs}, {param:channel_ratio} and "
                               "{param:target_latency}")
        if self.strategy not in STRATEGIES:
            raise PrunevoError(f"unknown strategy {self.strategy!r}; allowed: {', '.join(STRATEGIES)}")
        if self.target_macs is not None:
            check_macs_target(self.target_macs)  # before any data or weights are loaded
        if self.channel_ratio is not None and not 0.0 <= self.channel_ratio < 1.0:
            raise PrunevoError(f"{{param:channel_ratio}} {self.channel_ratio} is out of range; allowed: 0 <= ratio < 1 "
                               f"(the share of the channels removed)")
        check_allocation(self.allocation)
        if self.calibration_samples < 2:
            raise PrunevoError("calibration_samples must be at least 2")
        if self.calibration_batch is not None and self.calibration_batch < 1:
            raise PrunevoError(f"{{param:calibration_batch}} must be at least 1, got {self.calibration_batch}")
        if self.cycles < 1:
            raise PrunevoError(f"cycles must be >= 1, got {self.cycles}")
        if self.layer_reduction not in UNIT_REDUCTIONS:
            raise PrunevoError(f"unknown layer-score reduction {self.layer_reduction!r}; "
                               f"allowed: {', '.join(UNIT_REDUCTIONS)}")
        if self.target_latency is not None:
            if not 0.0 < self.target_latency <= 1.0:
                raise PrunevoError(f"latency target {self.target_latency} is out of range; allowed: 0 < target <= 1 "
                                   f"(the share of the original latency that remains)")
            if self.latency is None:
                raise PrunevoError("a latency target needs latency measurement, which is off (latency is None)")
            if self.strategy not in ("channel", "layer"):
                raise PrunevoError(f"{{param:target_latency}} works with the channel and layer strategies, not "
                                   f"{self.strategy}")
        if self.reconstruct and self.strategy not in RECONSTRUCTS:
            raise PrunevoError(f"{{param:reconstruct}} refits the layers that read removed channels, which the "
                               f"{self.strategy} strategy does not remove; allowed: {{param:strategy}} "
                               f"{' or '.join(RECONSTRUCTS)}")
        if self.allocation == "random-search" and self.channel_ratio is not None:
            raise PrunevoError("random search samples configurations under a MACs budget: give {param:target_macs} or "
                               "{param:target_latency}, not {param:channel_ratio}")
        if self.strategy == "layer" and self.channel_ratio is not None:
            raise PrunevoError("layer pruning removes whole blocks: give {param:target_macs} or "
                               "{param:target_latency}, not {param:channel_ratio}")
        self.prune_spec()  # validates the reduction, Domino variant and caps
        if self.round_to is not None and not 1 <= self.round_to <= 1024:
            raise PrunevoError(f"round_to must be in [1, 1024], got {self.round_to}")

    @classmethod
    def from_run(cls, run_dir: str | Path, **changes) -> "TransferConfig":
        """The setting a search on the user's network ran in (``prunevo evolve --model``): its model, checkpoint,
        data, target, allocation and fine-tune epochs (``run_settings``), with ``changes`` (config paths, as
        ``configs.build`` takes them: ``{"finetune.epochs": 1}``).  ``apply_formula(run_dir,
        TransferConfig.from_run(run_dir))`` prunes that network with the run's winner.  Raises RunError."""
        from prunevo.configs import build

        settings = run_settings(run_dir)
        if any(k in changes for k in ("target_macs", "channel_ratio", "target_latency")):
            settings = {k: v for k, v in settings.items() if k not in ("target_macs", "channel_ratio")}
        return build(cls, {**settings, **changes})

    def to_dict(self) -> dict:
        """The config as reports store it, with ``round_to`` and ``calibration_batch`` resolved for the device,
        and the regime."""
        return {**asdict(self), "round_to": self.rounding, "calibration_batch": self.calibration_chunk,
                "regime": self.regime}

    @property
    def regime(self) -> str:
        """one-shot, short fine-tune or full fine-tune (``training.regimes``), from the fine-tune epochs."""
        return regime_of(self.finetune.epochs, self.reconstruct)

    @property
    def on_cuda(self) -> bool:
        return self.accelerator.on_cuda

    @property
    def rounding(self) -> int:
        """The channel multiple every pruned group keeps (``round_to``, or its default for the device)."""
        if self.round_to is not None:
            return self.round_to
        return ROUND_TO["cuda" if self.on_cuda else "cpu"]

    @property
    def calibration_chunk(self) -> int:
        """Images per calibration pass (``calibration_batch``, or its default for the device)."""
        if self.calibration_batch is not None:
            return self.calibration_batch
        return CALIBRATION_BATCH["cuda" if self.on_cuda else "cpu"]

    def prune_spec(self) -> PruneSpec:
        return PruneSpec(ratio=self.channel_ratio or 0.0, ranking=RANKING_OF.get(self.allocation, "layerwise"),
                         max_layer_ratio=self.max_layer_ratio, group_reduction=self.group_reduction,
                         domino=self.domino)

    @property
    def variant(self) -> str:
        """The strategy as a table column (a *variant*: strategy plus allocation, see ``transfer.variants``):
        uniform, global, random-search, layer, iterative..."""
        return variant_name(self.strategy, self.allocation)
