"""Command line of the transfer part: prunevo train | apply | compare."""
from __future__ import annotations

from pathlib import Path

from prunevo.cli_options import ConfigOptions, config_values
from prunevo.configs import build, field_default
from prunevo.errors import PrunevoError
from prunevo.pruning.allocation import ALLOCATIONS
from prunevo.pruning.criteria import criterion_names
from prunevo.pruning.layers import UNIT_REDUCTIONS
from prunevo.pruning.ranking import DOMINO, REDUCTIONS
from prunevo.pruning.target import DEFAULT_TARGET_MACS, TOLERANCE
from prunevo.training.schedules import BASE_SCHEDULES, RETRAIN_SCHEDULES
from prunevo.transfer.config import CALIBRATION_BATCH, ROUND_TO
from prunevo.transfer.variants import (
    BENCHMARK_CRITERIA,
    BENCHMARK_STRATEGIES,
    COMPARE_CRITERIA,
    STRATEGIES,
    STRATEGY_NAMES,
    variant_name,
)
from prunevo.zoo.images import FOLDER_SIZE
from prunevo.zoo.models import SMALL_INPUT_MAX, SMALL_NET_NAMES, STEMS
from prunevo.zoo.registry import datasets_help

BENCHMARK_SEEDS = 2

STRATEGY_HELP = ("channel = remove channels in one shot; layer = remove whole residual blocks / same-shape conv "
                 "layers, least important first (block score = reduction of its filter scores); iterative = "
                 "--cycles prune/retrain cycles of channel pruning (IMP); unstructured = the classic IMP "
                 "baseline, global weight magnitude (sparse weights, no speed-up; the criterion is unused)")
ALLOCATION_HELP = ("uniform = the same share of every group; global = one ranking over all groups with a per-layer "
                   "cap; random-search = sample per-layer keep ratios, rescale each to the MACs target, keep the "
                   "configuration with the best BatchNorm-recalibrated validation accuracy (Li et al. 2022)")

MODEL_HELP = ("torchvision classification model (resnet18, resnet50, vgg11_bn, mobilenet_v2, densenet121, "
              "efficientnet_b0...), a small net (" + ", ".join(sorted(SMALL_NET_NAMES)) + "), timm:NAME (a timm "
              "architecture, e.g. timm:resnet50d, timm:efficientnet_b0; needs pip install 'prunevo[timm]'; no "
              "weights are downloaded), module:function or path/to/models.py:function (a function returning an "
              "nn.Module), or a whole-model .pt file (torch.save(model), float16/bfloat16 too; 'prunevo apply' "
              "output's pruned_model.pt or pruned_weights.pt)")
DATASET_HELP = datasets_help()  # derived from the dataset registry (zoo.registry)


def _add_setup(o: ConfigOptions, model_required: bool = True) -> None:
    """Data and model (``setup``) and where it runs (``accelerator``): train, apply, compare, benchmark."""
    o.field("data", "--model", path="setup.model", required=model_required, help=MODEL_HELP)
    o.field("data", "--dataset", path="setup.dataset", help=DATASET_HELP)
    o.field("data", "--data-root", path="setup.data_root",
            help="folder holding the dataset files in torchvision's layout (MNIST/raw, FashionMNIST/raw, "
                 "cifar-10-batches-py, train_32x32.mat...)")
    o.field("data", "--download", path="setup.download", action="store_const", const=True,
            help="let torchvision download missing dataset files into --data-root")
    o.field("data", "--image-size", path="setup.image_size", type=int,
            help="resize images to this many pixels", default=f"the dataset's own size; {FOLDER_SIZE} for image "
                                                              "folders of large photos; a checkpoint's size")
    o.field("data", "--stem", path="setup.stem", choices=STEMS,
            help=f"torchvision models: cifar = 3x3 stride-1 stem for small images; auto = the stem a prunevo "
                 f"checkpoint was trained with, else cifar at <= {SMALL_INPUT_MAX} px")
    o.field("data", "--cache-dir", path="setup.cache_dir", help="where extracted data is cached",
            default="$PRUNEVO_CACHE or ~/.cache/prunevo")
    o.field("execution", "--device", path="accelerator.device", help="auto (CUDA when present), cpu, cuda or cuda:N")
    o.field("execution", "--no-amp", path="accelerator.amp", action="store_const", const=False,
            help="no bfloat16 mixed precision", default="on with CUDA")
    o.field("execution", "--no-channels-last", path="accelerator.channels_last", action="store_const", const=False,
            help="no channels_last memory format", default="on with CUDA")
    o.plain("output", "--no-progress", action="store_true", help="no progress bars")


def _add_fit(o: ConfigOptions, fit: str, schedules) -> None:
    """The SGD budget at ``fit`` (``fit`` of TrainConfig, ``finetune`` of TransferConfig)."""
    o.field("finetune", "--epochs", path=f"{fit}.epochs", type=float, help="training epochs; fractions allowed")
    o.field("finetune", "--lr", path=f"{fit}.lr", type=float, help="peak learning rate of SGD")
    o.field("finetune", "--lr-schedule", path=f"{fit}.lr_schedule", choices=schedules, help="learning-rate schedule" + (
        "; ft = constant final LR of the original schedule (1% of --lr), slr = 10% warm-up then the original "
        "schedule compressed, clr = 10% warm-up then one cosine cycle" if "ft" in schedules
        else "; step = x0.1 at 50% and 75%"))
    o.field("finetune", "--batch-size", path=f"{fit}.batch_size", type=int, help="training batch size")
    o.field("finetune", "--weight-decay", path=f"{fit}.weight_decay", type=float, help="SGD weight decay")
    o.field("finetune", "--momentum", path=f"{fit}.momentum", type=float,
            help="SGD Nesterov momentum; 0 = plain SGD")
    o.field("execution", "--workers", path=f"{fit}.workers", type=int, help="DataLoader worker processes")


def _add_prune(o: ConfigOptions) -> None:
    """Target, criterion statistics, strategy settings, fine-tune and latency: apply, compare, benchmark."""
    o.field("data", "--checkpoint", path="setup.checkpoint",
            help="base weights: a checkpoint from 'prunevo train' or a state_dict file (loaded with "
                 "weights_only=True)")
    target = o.group("target").add_mutually_exclusive_group()
    target.add_argument("--target-macs", dest="target_macs", type=float, default=None,
                        help=f"share of the original MACs to keep, met within {TOLERANCE * 100:g}%% (default: "
                             f"{DEFAULT_TARGET_MACS:g} "
                             f"when no other target is given)")
    target.add_argument("--channel-ratio", dest="channel_ratio", type=float, default=None,
                        help="share of prunable channels to remove instead (channel and iterative strategies; "
                             "unstructured: the share of weights zeroed)")
    target.add_argument("--target-latency", dest="target_latency", type=float, default=None,
                        help="share of the unpruned model's measured latency to keep instead (channel and layer "
                             "strategies; measured on --device at the largest --latency-batches)")
    o.field("target", "--ignore-layers", path="ignore_layers", nargs="+", metavar="NAME",
            help="layers whose output channels are never pruned, by module name as model.named_modules() gives it "
                 "(features.0 layer4.1.conv2), besides the output layer, which is always kept (Torch-Pruning's "
                 "ignored_layers)")
    o.field("target", "--max-layer-ratio", path="max_layer_ratio", type=float,
            help="no allocation removes more than this share of one group")
    o.field("target", "--round-to", path="round_to", type=int, metavar="N",
            help="every pruned group keeps a multiple of N channels, rounded down as Torch-Pruning's round_to does "
                 "(never fewer than N); GPU kernels run fastest on multiples of 8; reports say which",
            default=f"{ROUND_TO['cuda']} when --device is CUDA, {ROUND_TO['cpu']} on the CPU")
    o.field("criterion", "--group-reduction", path="group_reduction", choices=REDUCTIONS,
            help="how the scores of coupled layers combine into one group score")
    o.field("criterion", "--domino", path="domino", choices=DOMINO,
            help="o = coupled output channels; io = also the input-channel saliencies of the consuming layers")
    o.field("criterion", "--calibration-samples", path="calibration_samples", type=int,
            help="class-stratified training images used to gather statistics")
    o.field("criterion", "--calibration-batch", path="calibration_batch", type=int,
            help="images per calibration pass: activations and gradients are reduced batch by batch, so memory "
                 "holds one batch of them (reconstruction, when not given: as many as keep a layer's regression "
                 "rows under 256 MB)",
            default=f"{CALIBRATION_BATCH['cpu']} on the CPU, {CALIBRATION_BATCH['cuda']} on CUDA")
    o.field("strategy", "--search-candidates", path="search.candidates", type=int,
            help="random-search allocation: sampled per-layer configurations")
    o.field("strategy", "--search-samples", path="search.samples", type=int,
            help="random-search allocation: validation images scoring each candidate")
    o.field("strategy", "--search-epochs", path="search.finetune_epochs", type=float,
            help="random-search allocation: fine-tune epochs before scoring a candidate; 0 = BatchNorm "
                 "recalibration only")
    o.field("strategy", "--cycles", path="cycles", type=int,
            help="iterative and unstructured strategies: prune/retrain cycles, each removing 1-(1-s)^(1/cycles) of "
                 "what is left; the fine-tune epochs are split over them")
    o.field("strategy", "--layer-reduction", path="layer_reduction", choices=UNIT_REDUCTIONS,
            help="layer strategy: how a block's filter scores combine into its score")
    add_reconstruction(o)
    _add_fit(o, "finetune", RETRAIN_SCHEDULES)
    o.field("finetune", "--original-schedule", path="finetune.original_schedule", choices=BASE_SCHEDULES,
            help="the base model's schedule, which SLR compresses",
            default=f"the checkpoint's, else {field_default(o.config, 'finetune.original_schedule')}")
    o.field("latency", "--latency-batches", path="latency.batch_sizes", type=int, nargs="+", metavar="B",
            help="batch sizes of the latency measurement")
    o.field("latency", "--latency-repeats", path="latency.repeats", type=int,
            help=f"at least this many timed blocks (torch.utils.benchmark.Timer.blocked_autorange, at least "
                 f"{field_default(o.config, 'latency.min_run_time'):g} s per batch size); the median is kept")
    o.field("latency", "--latency-threads", path="latency.threads", type=int, help="CPU threads while timing",
            default="torch's setting")
    o.plain("latency", "--no-latency", action="store_true", help="skip latency measurement")


def add_reconstruction(o: ConfigOptions, prefix: str = "") -> None:
    """--reconstruct and its settings (``prefix``: the config path they sit under, for fitness tasks' overrides)."""
    o.field("reconstruct", "--reconstruct", path=f"{prefix}reconstruct", action="store_true",
            help="before BatchNorm is re-estimated, refit each layer that reads removed channels by ridge least "
                 "squares so that it reproduces its unpruned output on the calibration images, layer by layer on the "
                 "pruned network's inputs (He et al. 2017, ThiNet): the regime 'one-shot + reconstruction'; channel "
                 "and iterative strategies")
    if prefix:
        return  # tasks take the settings' defaults
    o.field("reconstruct", "--reconstruct-ridge", path="reconstruction.ridge", type=float,
            help="ridge penalty relative to the mean diagonal of each layer's input Gram matrix XᵀX")
    o.field("reconstruct", "--reconstruct-positions", path="reconstruction.positions", type=int, metavar="P",
            help="output positions per image each convolution's fit reads (the same random ones for every image; "
                 "fewer are faster on large inputs)", default="all")


def add_transfer_commands(sub) -> None:
    from inspect import signature

    from prunevo.transfer.apply import apply_formula
    from prunevo.transfer.compare import COMPARE_SEEDS
    from prunevo.transfer.config import TransferConfig
    from prunevo.transfer.train import TrainConfig

    p = sub.add_parser("train", help="train a base model on a dataset (no weights can be downloaded)",
                       description="Train a model and save a checkpoint that 'apply' and 'compare' load with "
                                   "--checkpoint.")
    o = ConfigOptions(p, TrainConfig)
    _add_setup(o)
    o.field("data", "--checkpoint", path="setup.checkpoint",
            help="start from these weights instead of a random initialization")
    _add_fit(o, "fit", BASE_SCHEDULES)
    o.field("run", "--seed", path="seed", type=int, help="initialization and data-order seed")
    o.field("output", "-o", "--output", path="output", help="checkpoint file to write")

    p = sub.add_parser("apply", help="prune a model with one formula, fine-tune it, save it and a report",
                       description="Prune --model on --dataset with --formula, fine-tune, and write the pruned "
                                   "model (pruned_model.pt2, pruned_weights.pt, pruned_model.pt) and report.json/.md. "
                                   "'prunevo apply RUN_DIR' prunes the network a search ran on (evolve --model) "
                                   "with its winner, as the run did: its model, checkpoint, data, target and "
                                   "allocation, each replaced by any option given.")
    p.add_argument("run", nargs="?", metavar="RUN_DIR",
                   help="a run directory of 'prunevo evolve --model ...': its winner and its network's settings")
    o = ConfigOptions(p, TransferConfig)
    o.plain("criterion", "--formula",
            help="formula text ('l1(W) / (std(F) + 0.05)'), a named criterion (" + criterion_names() + "; see "
                 "'prunevo criteria'), a .json/.txt export, or a run directory (its best formula); required "
                 "except with --strategy unstructured or RUN_DIR")
    _add_setup(o, model_required=False)
    _add_prune(o)
    o.field("strategy", "--strategy", path="strategy", choices=STRATEGIES, help=STRATEGY_HELP)
    o.field("strategy", "--allocation", path="allocation", choices=ALLOCATIONS, help=ALLOCATION_HELP)
    o.plain("run", "--seed", type=int, default=signature(apply_formula).parameters["seed"].default,
            help="calibration, fine-tuning and random-criterion seed")
    o.plain("output", "-o", "--output", default="pruned", help="output directory")

    p = sub.add_parser("compare", help="run the same pruning pipeline for several criteria and seeds",
                       description="Prune with every criterion and seed under identical settings; print mean ± std, "
                                   "the gap to random and the gap to the best classic (the best classic or "
                                   "Torch-Pruning criterion compared); a criterion that needs what the model lacks "
                                   "is listed as n/a; write compare.json, compare.md and compare.png.")
    o = ConfigOptions(p, TransferConfig)
    o.plain("criterion", "--formulas", nargs="+", default=list(COMPARE_CRITERIA), metavar="F",
            help="criteria as for apply --formula, and the word baselines for every classic and Torch-Pruning "
                 "criterion; random is always added; the table's 'vs best classic' compares with the best classic "
                 "or Torch-Pruning criterion among them")
    _add_setup(o)
    _add_prune(o)
    o.field("strategy", "--strategy", path="strategy", nargs="+", choices=STRATEGIES, metavar="S",
            help=STRATEGY_HELP + "; several: one table row per criterion and strategy plus a grid; channel "
                                 "strategies compared with layer under a MACs target are matched to layer pruning's "
                                 "measured latency")
    o.field("strategy", "--allocation", path="allocation", nargs="+", choices=ALLOCATIONS, metavar="A",
            help=ALLOCATION_HELP + "; several (e.g. uniform random-search) print the criterion x allocation grid")
    o.plain("run", "--seeds", type=int, default=COMPARE_SEEDS, help="seeds 0..N-1 per criterion")
    o.plain("output", "-o", "--output", default="compare", help="output directory")

    p = sub.add_parser("benchmark", help="criteria x strategies table (accuracy, MACs, latency, vs random) and plots",
                       description="Prune one model with every criterion under every strategy (same seeds, same MACs "
                                   "target, same fine-tuning) and write benchmark.md, benchmark.json and "
                                   "benchmark.png, with the gap to random and to the best classic (the best classic "
                                   "or Torch-Pruning criterion) per strategy; the unstructured IMP baseline is added "
                                   "below the table.")
    o = ConfigOptions(p, TransferConfig)
    o.plain("criterion", "--formulas", nargs="+", default=list(BENCHMARK_CRITERIA), metavar="F",
            help="criteria as for apply --formula; random is always added")
    o.plain("strategy", "--strategies", nargs="+", choices=STRATEGY_NAMES, default=list(BENCHMARK_STRATEGIES),
            metavar="S", help="table columns: uniform, global, random-search (one-shot channel allocations), layer, "
                              "iterative, iterative-global, iterative-random-search (IMP cycles), unstructured")
    o.plain("strategy", "--no-unstructured", action="store_true", help="skip the unstructured IMP baseline")
    _add_setup(o)
    _add_prune(o)
    o.plain("run", "--seeds", type=int, default=BENCHMARK_SEEDS, help="seeds 0..N-1 per criterion and strategy")
    o.plain("output", "-o", "--output", default="benchmark", help="output directory")


def _transfer_config(args, **fixed):
    """TransferConfig from what was typed (every other field keeps the dataclass default; with apply's RUN_DIR,
    the run's settings) and ``fixed``."""
    from prunevo.transfer.config import TransferConfig
    from prunevo.transfer.run_dirs import run_settings
    from prunevo.zoo.checkpoints import read_checkpoint

    typed = config_values(args, TransferConfig)
    run = getattr(args, "run", None)
    if run is None and "setup.model" not in typed:
        raise PrunevoError("--model is required (or, for apply, a run directory of 'prunevo evolve --model')")
    values = {**typed, **fixed}
    checkpoint = values.get("setup.checkpoint") or (run_settings(run).get("setup.checkpoint") if run else None)
    if checkpoint and "finetune.original_schedule" not in values:  # SLR follows the base net's recipe
        schedule = read_checkpoint(checkpoint)[1].get("schedule")
        if schedule:
            values["finetune.original_schedule"] = schedule
    if args.no_latency:
        values = {k: v for k, v in values.items() if not k.startswith("latency.")}
        values["latency"] = None
    return TransferConfig.from_run(run, **values) if run else build(TransferConfig, values)


def cmd_train(args) -> int:
    from prunevo.transfer.train import train_base

    result = train_base(_train_config(args), progress=not args.no_progress)
    test = ", ".join(f"{k} {v:.4f}" for k, v in result.test.items())
    print(f"saved {result.output}: validation top-1 {result.val_top1:.4f}; test {test}; {result.wall_s:.0f} s")
    if result.augmentation:
        print(f"augmentation: {result.augmentation}")
    return 0


def cmd_apply(args) -> int:
    from prunevo.transfer.apply import apply_formula

    config = _transfer_config(args)
    formula = args.formula or args.run
    if formula is None and config.strategy != "unstructured":
        raise PrunevoError("--formula is required (a formula, classic name, random, export file or run directory)")
    _, result = apply_formula(formula or "random", config, Path(args.output), seed=args.seed,
                              progress=not args.no_progress)
    print((Path(args.output) / "report.md").read_text())
    return 0


def _compare_config(args):
    """(the config, the strategy x allocation names): with several strategies and allocations the config holds
    the first of each, and the table has every combination."""
    from prunevo.transfer.config import TransferConfig

    strategies = args.strategy or [field_default(TransferConfig, "strategy")]
    allocations = args.allocation or [field_default(TransferConfig, "allocation")]
    names = [variant_name(s, a) for s in strategies for a in allocations]
    return _transfer_config(args, strategy=strategies[0], allocation=allocations[0]), names


def cmd_compare(args) -> int:
    from prunevo.transfer.compare import compare_criteria

    config, names = _compare_config(args)
    result = compare_criteria(args.formulas, config, seeds=tuple(range(args.seeds)), out_dir=Path(args.output),
                              progress=not args.no_progress, strategies=names)
    print(result.markdown)
    print(f"wrote {Path(args.output) / 'compare.md'}, compare.json, compare.png ({result.wall_s:.0f} s)")
    return 0


def cmd_benchmark(args) -> int:
    from prunevo.transfer.compare import compare_criteria

    strategies = list(dict.fromkeys(list(args.strategies) + ([] if args.no_unstructured else ["unstructured"])))
    result = compare_criteria(args.formulas, _transfer_config(args), seeds=tuple(range(args.seeds)),
                              out_dir=Path(args.output),
                              progress=not args.no_progress, strategies=strategies, match_latency=False,
                              name="benchmark")
    print(result.markdown)
    print(f"wrote {Path(args.output) / 'benchmark.md'}, benchmark.json, benchmark.png ({result.wall_s:.0f} s)")
    return 0


def _train_config(args):
    from prunevo.transfer.train import TrainConfig

    return build(TrainConfig, config_values(args, TrainConfig))


TRANSFER_COMMANDS = {"train": cmd_train, "apply": cmd_apply, "compare": cmd_compare, "benchmark": cmd_benchmark}
TRANSFER_CONFIGS = {"train": _train_config, "apply": _transfer_config, "compare": lambda args: _compare_config(args)[0],
                    "benchmark": _transfer_config}
