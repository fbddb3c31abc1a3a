"""Command line of the transfer part: prunevo train | apply | compare."""
from __future__ import annotations

import argparse
from pathlib import Path

from prunevo.errors import PrunevoError
from prunevo.pruning.allocation import ALLOCATIONS
from prunevo.pruning.criteria import criterion_names
from prunevo.pruning.layers import UNIT_REDUCTIONS
from prunevo.training.schedules import RETRAIN_SCHEDULES
from prunevo.transfer.variants import BENCHMARK_CRITERIA, COMPARE_CRITERIA, BENCHMARK_STRATEGIES, STRATEGIES, STRATEGY_NAMES, variant_name

STRATEGY_HELP = ("channel = remove channels in one shot; layer = remove whole residual blocks / same-shape conv "
                 "layers, least important first (block score = reduction of its filter scores); iterative = "
                 "--cycles prune/retrain cycles of channel pruning (IMP); unstructured = the classic IMP "
                 "baseline, global weight magnitude (sparse weights, no speed-up; --formula unused)")
ALLOCATION_HELP = ("uniform = the same share of every group; global = one ranking over all groups with a per-layer "
                   "cap; random-search = sample per-layer keep ratios, rescale each to the MACs target, keep the "
                   "configuration with the best BatchNorm-recalibrated validation accuracy (Li et al. 2022)")

MODEL_HELP = ("torchvision classification model (resnet18, resnet50, vgg11_bn, mobilenet_v2, densenet121, "
              "efficientnet_b0...), small-vgg, small-resnet, lenet5, module:function, or a whole-model .pt file")
DATASET_HELP = ("digits (embedded), mnist, fashion-mnist, cifar10, cifar100, svhn (from --data-root), "
                "imagefolder:PATH (PATH/train, PATH/val), or fakedata (random images, for smoke tests)")


def _add_data_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--dataset", default="digits", help=DATASET_HELP + " (default: digits)")
    p.add_argument("--data-root", help="folder holding the dataset files in torchvision's layout "
                                       "(MNIST/raw, FashionMNIST/raw, cifar-10-batches-py, train_32x32.mat...)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download missing dataset files into --data-root (off by default)")
    p.add_argument("--image-size", type=int, help="resize images to this many pixels (default: the dataset's "
                                                  "own size; 224 for image folders; a checkpoint's size)")
    p.add_argument("--stem", choices=["auto", "imagenet", "cifar"], default="auto",
                   help="torchvision models: cifar = 3x3 stride-1 stem for 28-64 px images; auto picks it at "
                        "<= 64 px (default: auto)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 mixed precision on the GPU")
    p.add_argument("--no-channels-last", action="store_true", help="no channels_last memory format on the GPU")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.add_argument("--cache-dir", help="where extracted data is cached (default: $PRUNEVO_CACHE or ~/.cache/prunevo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_fit(p: argparse.ArgumentParser, epochs: float, lr: float, schedules, default_schedule: str) -> None:
    p.add_argument("--epochs", type=float, default=epochs, help=f"training epochs; fractions allowed (default: {epochs:g})")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate of SGD (default: {lr:g})")
    p.add_argument("--lr-schedule", choices=list(schedules), default=default_schedule,
                   help=f"learning-rate schedule (default: {default_schedule})" + (
                       "; ft = constant final LR of the original schedule (1%% of --lr), slr = 10%% warm-up then "
                       "the original schedule compressed, clr = 10%% warm-up then one cosine cycle"
                       if "ft" in schedules else "; step = x0.1 at 50%% and 75%%"))
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD Nesterov momentum; 0 = plain SGD (default: 0.9)")


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="base weights: a checkpoint from 'prunevo train' or a state_dict file "
                                        "(loaded with weights_only=True)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-macs", type=float, help="share of the original MACs to keep, met within 3%% "
                                                         "(default: 0.5)")
    target.add_argument("--channel-ratio", type=float, help="share of prunable channels to remove instead "
                                                           "(channel and iterative strategies; unstructured: the "
                                                           "share of weights zeroed)")
    target.add_argument("--target-latency", type=float,
                        help="share of the unpruned model's measured latency to keep instead (channel and layer "
                             "strategies; measured on --device at the largest --latency-batches)")
    p.add_argument("--ignore-layers", nargs="+", metavar="NAME",
                   help="layers whose output channels are never pruned, by module name as model.named_modules() "
                        "gives it (features.0 layer4.1.conv2), besides the output layer, which is always kept "
                        "(Torch-Pruning's ignored_layers)")
    p.add_argument("--max-layer-ratio", type=float, default=0.9,
                   help="no allocation removes more than this share of one group (default: 0.9)")
    p.add_argument("--round-to", type=int, metavar="N",
                   help="every pruned group keeps a multiple of N channels, rounded down as Torch-Pruning's round_to "
                        "does (never fewer than N); GPU kernels run fastest on multiples of 8 (default: 8 when "
                        "--device is CUDA, 1 on the CPU; reports say which)")
    p.add_argument("--search-candidates", type=int, default=16,
                   help="random-search allocation: sampled per-layer configurations (default: 16)")
    p.add_argument("--search-samples", type=int, default=1024,
                   help="random-search allocation: validation images scoring each candidate (default: 1024)")
    p.add_argument("--search-epochs", type=float, default=0.0,
                   help="random-search allocation: fine-tune epochs before scoring a candidate; 0 = BatchNorm "
                        "recalibration only (default: 0)")
    p.add_argument("--cycles", type=int, default=3,
                   help="iterative and unstructured strategies: prune/retrain cycles, each removing "
                        "1-(1-s)^(1/cycles) of what is left; the fine-tune epochs are split over them (default: 3)")
    p.add_argument("--layer-reduction", choices=list(UNIT_REDUCTIONS), default="mean",
                   help="layer strategy: how a block's filter scores combine into its score (default: mean)")
    p.add_argument("--group-reduction", choices=["mean", "sum", "max"], default="mean",
                   help="how the scores of coupled layers combine into one group score (default: mean)")
    p.add_argument("--domino", choices=["o", "io"], default="o",
                   help="o = coupled output channels; io = also the input-channel saliencies of the consuming "
                        "layers (default: o)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="class-stratified training images used to gather statistics (default: 256)")
    p.add_argument("--calibration-batch", type=int, default=None,
                   help="images per calibration pass: activations and gradients are reduced batch by batch, so "
                        "memory holds one batch of them (default: 8 on the CPU, 32 on CUDA)")
    _add_fit(p, 1.0, 0.01, RETRAIN_SCHEDULES, "clr")
    p.add_argument("--original-schedule", choices=["step", "cosine"], default="step",
                   help="the base model's schedule, which SLR compresses (default: step, or the checkpoint's)")
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 64], metavar="B",
                   help="batch sizes of the latency measurement (default: 1 64)")
    p.add_argument("--latency-repeats", type=int, default=10,
                   help="at least this many timed blocks (torch.utils.benchmark.Timer.blocked_autorange, at least "
                        "0.2 s per batch size); the median is kept (default: 10)")
    p.add_argument("--latency-threads", type=int, help="CPU threads while timing (default: torch's setting)")
    p.add_argument("--no-latency", action="store_true", help="skip latency measurement")


def add_transfer_commands(sub) -> None:
    p = sub.add_parser("train", help="train a base model on a dataset (no weights can be downloaded)",
                       description="Train a model and save a checkpoint that 'apply' and 'compare' load with "
                                   "--checkpoint.")
    _add_data_model(p)
    _add_fit(p, 10.0, 0.05, ("step", "cosine"), "step")
    p.add_argument("--checkpoint", help="start from these weights instead of a random initialization")
    p.add_argument("-o", "--output", default="base.pt", help="checkpoint file to write (default: base.pt)")
    p.add_argument("--seed", type=int, default=0, help="initialization and data-order seed (default: 0)")

    p = sub.add_parser("apply", help="prune a model with one formula, fine-tune it, save it and a report",
                       description="Prune --model on --dataset with --formula, fine-tune, and write the pruned "
                                   "model (pruned_model.pt2, pruned_weights.pt, pruned_model.pt) and report.json/.md.")
    p.add_argument("--formula", help="formula text ('l1(W) / (std(F) + 0.05)'), a named criterion ("
                                     + criterion_names() + "; see 'prunevo criteria'), a .json/.txt export, or a "
                                     "run directory (its best formula); required except with --strategy unstructured")
    _add_data_model(p)
    _add_prune(p)
    p.add_argument("--strategy", choices=list(STRATEGIES), default="channel", help=STRATEGY_HELP + " (default: channel)")
    p.add_argument("--allocation", choices=list(ALLOCATIONS), default="uniform",
                   help=ALLOCATION_HELP + " (default: uniform)")
    p.add_argument("--seed", type=int, default=0, help="calibration, fine-tuning and random-criterion seed (default: 0)")
    p.add_argument("-o", "--output", default="pruned", help="output directory (default: pruned)")

    p = sub.add_parser("compare", help="run the same pruning pipeline for several criteria and seeds",
                       description="Prune with every criterion and seed under identical settings; print mean ± std, "
                                   "the gap to random and the gap to the best classic (the best classic or "
                                   "Torch-Pruning criterion compared); a criterion that needs what the model lacks "
                                   "is listed as n/a; write compare.json, compare.md and compare.png.")
    p.add_argument("--formulas", nargs="+", default=list(COMPARE_CRITERIA), metavar="F",
                   help="criteria as for apply --formula, and the word baselines for every classic and "
                        "Torch-Pruning criterion; random is always added; the table's 'vs best classic' compares "
                        "with the best classic or Torch-Pruning criterion among them "
                        f"(default: {' '.join(COMPARE_CRITERIA)})")
    _add_data_model(p)
    _add_prune(p)
    p.add_argument("--strategy", nargs="+", choices=list(STRATEGIES), default=["channel"], metavar="S",
                   help=STRATEGY_HELP + "; several: one table row per criterion and strategy plus a grid; channel "
                                        "strategies compared with layer under a MACs target are matched to layer "
                                        "pruning's measured latency (default: channel)")
    p.add_argument("--allocation", nargs="+", choices=list(ALLOCATIONS), default=["uniform"], metavar="A",
                   help=ALLOCATION_HELP + "; several (e.g. uniform random-search) print the criterion x allocation "
                                          "grid (default: uniform)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per criterion (default: 3)")
    p.add_argument("-o", "--output", default="compare", help="output directory (default: compare)")

    p = sub.add_parser("benchmark", help="criteria x strategies table (accuracy, MACs, latency, vs random) and plots",
                       description="Prune one model with every criterion under every strategy (same seeds, same MACs "
                                   "target, same fine-tuning) and write benchmark.md, benchmark.json and "
                                   "benchmark.png, with the gap to random and to the best classic (the best classic "
                                   "or Torch-Pruning criterion) per strategy; the unstructured IMP baseline is added "
                                   "below the table.")
    p.add_argument("--formulas", nargs="+", default=list(BENCHMARK_CRITERIA), metavar="F",
                   help="criteria as for apply --formula; random is always added "
                        f"(default: {' '.join(BENCHMARK_CRITERIA)})")
    p.add_argument("--strategies", nargs="+", choices=list(STRATEGY_NAMES), default=list(BENCHMARK_STRATEGIES),
                   metavar="S", help="table columns: uniform, global, random-search (one-shot channel allocations), "
                                     "layer, iterative, iterative-global, iterative-random-search (IMP cycles), "
                                     "unstructured "
                                     f"(default: {' '.join(BENCHMARK_STRATEGIES)})")
    p.add_argument("--no-unstructured", action="store_true", help="skip the unstructured IMP baseline")
    _add_data_model(p)
    _add_prune(p)
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per criterion and strategy (default: 2)")
    p.add_argument("-o", "--output", default="benchmark", help="output directory (default: benchmark)")


def _fit_config(args, schedule_original: str | None = None):
    from prunevo.training import FitConfig

    return FitConfig(epochs=args.epochs, lr=args.lr, lr_schedule=args.lr_schedule,
                     original_schedule=schedule_original or getattr(args, "original_schedule", "step"),
                     batch_size=args.batch_size, weight_decay=args.weight_decay, momentum=args.momentum,
                     workers=args.workers)


def _transfer_config(args, strategy: str = "channel", allocation: str = "uniform"):
    from prunevo.pruning.allocation import SearchSpec
    from prunevo.pruning.latency import LatencySpec
    from prunevo.transfer.checkpoint import read_checkpoint
    from prunevo.transfer.session import TransferConfig

    original = None
    if args.checkpoint and args.original_schedule == "step":
        original = read_checkpoint(args.checkpoint)[1].get("schedule")  # SLR follows the base net's recipe
    latency = None if args.no_latency else LatencySpec(tuple(args.latency_batches), repeats=args.latency_repeats,
                                                       threads=args.latency_threads)
    others = args.channel_ratio is not None or args.target_latency is not None
    target = args.target_macs if args.target_macs is not None else (None if others else 0.5)
    return TransferConfig(
        model=args.model, dataset=args.dataset, data_root=args.data_root, download=args.download,
        checkpoint=args.checkpoint, image_size=args.image_size, stem=args.stem, target_macs=target,
        channel_ratio=args.channel_ratio, target_latency=args.target_latency, strategy=strategy,
        allocation=allocation, search=SearchSpec(args.search_candidates, args.search_samples, args.search_epochs),
        cycles=args.cycles, layer_reduction=args.layer_reduction, max_layer_ratio=args.max_layer_ratio,
        ignore_layers=tuple(args.ignore_layers or ()),
        round_to=args.round_to,
        group_reduction=args.group_reduction, domino=args.domino, calibration_samples=args.calibration_samples,
        calibration_batch=args.calibration_batch,
        finetune=_fit_config(args, original), device=args.device, amp=False if args.no_amp else None,
        channels_last=False if args.no_channels_last else None, latency=latency, cache_dir=args.cache_dir)


def cmd_train(args) -> int:
    from prunevo.transfer.train import TrainConfig, train_base

    config = TrainConfig(model=args.model, dataset=args.dataset, output=args.output, data_root=args.data_root,
                         download=args.download, image_size=args.image_size, stem=args.stem, fit=_fit_config(args),
                         seed=args.seed, device=args.device, amp=False if args.no_amp else None,
                         channels_last=False if args.no_channels_last else None, checkpoint=args.checkpoint,
                         cache_dir=args.cache_dir)
    result = train_base(config, progress=not args.no_progress)
    test = ", ".join(f"{k} {v:.4f}" for k, v in result.test.items())
    print(f"saved {result.output}: validation top-1 {result.val_top1:.4f}; test {test}; {result.wall_s:.0f} s")
    if result.augmentation:
        print(f"augmentation: {result.augmentation}")
    return 0


def cmd_apply(args) -> int:
    from prunevo.transfer.apply import apply_formula

    if args.formula is None and args.strategy != "unstructured":
        raise PrunevoError("--formula is required (a formula, classic name, random, export file or run directory)")
    _, result = apply_formula(args.formula or "random", _transfer_config(args, args.strategy, args.allocation),
                              Path(args.output), seed=args.seed, progress=not args.no_progress)
    print((Path(args.output) / "report.md").read_text())
    return 0


def cmd_compare(args) -> int:
    from prunevo.transfer.compare import compare_criteria

    names = [variant_name(s, a) for s in args.strategy for a in args.allocation]
    config = _transfer_config(args, args.strategy[0], args.allocation[0])
    result = compare_criteria(args.formulas, config, tuple(range(args.seeds)), Path(args.output),
                              progress=not args.no_progress, strategies=names)
    print(result.markdown)
    print(f"wrote {Path(args.output) / 'compare.md'}, compare.json, compare.png ({result.wall_s:.0f} s)")
    return 0


def cmd_benchmark(args) -> int:
    from prunevo.transfer.compare import compare_criteria

    strategies = list(dict.fromkeys(list(args.strategies) + ([] if args.no_unstructured else ["unstructured"])))
    result = compare_criteria(args.formulas, _transfer_config(args), tuple(range(args.seeds)), Path(args.output),
                              progress=not args.no_progress, strategies=strategies, match_latency=False,
                              name="benchmark")
    print(result.markdown)
    print(f"wrote {Path(args.output) / 'benchmark.md'}, benchmark.json, benchmark.png ({result.wall_s:.0f} s)")
    return 0


TRANSFER_COMMANDS = {"train": cmd_train, "apply": cmd_apply, "compare": cmd_compare, "benchmark": cmd_benchmark}
