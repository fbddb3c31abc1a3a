"""Command line of the transfer part: prunevo train | apply | compare."""
from __future__ import annotations

import argparse
from pathlib import Path

from prunevo.pruning.schedules import RETRAIN_SCHEDULES

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
    target.add_argument("--channel-ratio", type=float, help="share of prunable channels to remove instead")
    p.add_argument("--selection", choices=["layerwise", "global"], default="layerwise",
                   help="the same ratio in every group, or one global ranking with a per-layer cap (default: layerwise)")
    p.add_argument("--max-layer-ratio", type=float, default=0.9,
                   help="global selection never removes more than this share of one group (default: 0.9)")
    p.add_argument("--group-reduction", choices=["mean", "sum", "max"], default="mean",
                   help="how the scores of coupled layers combine into one group score (default: mean)")
    p.add_argument("--domino", choices=["o", "io"], default="o",
                   help="o = coupled output channels; io = also the input-channel saliencies of the consuming "
                        "layers (default: o)")
    p.add_argument("--calibration-samples", type=int, default=256,
                   help="class-stratified training images used to gather statistics (default: 256)")
    _add_fit(p, 1.0, 0.01, RETRAIN_SCHEDULES, "clr")
    p.add_argument("--original-schedule", choices=["step", "cosine"], default="step",
                   help="the base model's schedule, which SLR compresses (default: step, or the checkpoint's)")
    p.add_argument("--latency-batches", type=int, nargs="+", default=[1, 64], metavar="B",
                   help="batch sizes of the latency measurement (default: 1 64)")
    p.add_argument("--latency-repeats", type=int, default=10, help="timed repeats; the median is kept (default: 10)")
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
    p.add_argument("--formula", required=True, help="formula text ('l1(W) / (std(F) + 0.05)'), a classic name "
                                                    "(l1 l2 bn taylor apoz activation snr fpgm), random, a .json/.txt "
                                                    "export, or a run directory (its best formula)")
    _add_data_model(p)
    _add_prune(p)
    p.add_argument("--seed", type=int, default=0, help="calibration, fine-tuning and random-criterion seed (default: 0)")
    p.add_argument("-o", "--output", default="pruned", help="output directory (default: pruned)")

    p = sub.add_parser("compare", help="run the same pruning pipeline for several criteria and seeds",
                       description="Prune with every criterion and seed under identical settings; print mean ± std "
                                   "and the gap to random; write compare.json, compare.md and compare.png.")
    p.add_argument("--formulas", nargs="+", default=["l1", "l2", "bn", "taylor", "random"], metavar="F",
                   help="criteria as for apply --formula; random is always added (default: l1 l2 bn taylor random)")
    _add_data_model(p)
    _add_prune(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per criterion (default: 3)")
    p.add_argument("-o", "--output", default="compare", help="output directory (default: compare)")


def _fit_config(args, schedule_original: str | None = None):
    from prunevo.transfer.training import FitConfig

    return FitConfig(epochs=args.epochs, lr=args.lr, lr_schedule=args.lr_schedule,
                     original_schedule=schedule_original or getattr(args, "original_schedule", "step"),
                     batch_size=args.batch_size, weight_decay=args.weight_decay, momentum=args.momentum,
                     workers=args.workers)


def _transfer_config(args):
    from prunevo.pruning.latency import LatencySpec
    from prunevo.transfer.checkpoint import read_checkpoint
    from prunevo.transfer.session import TransferConfig

    original = None
    if args.checkpoint and args.original_schedule == "step":
        original = read_checkpoint(args.checkpoint)[1].get("schedule")  # SLR follows the base net's recipe
    latency = None if args.no_latency else LatencySpec(tuple(args.latency_batches), repeats=args.latency_repeats,
                                                       threads=args.latency_threads)
    target = args.target_macs if args.target_macs is not None else (None if args.channel_ratio is not None else 0.5)
    return TransferConfig(
        model=args.model, dataset=args.dataset, data_root=args.data_root, download=args.download,
        checkpoint=args.checkpoint, image_size=args.image_size, stem=args.stem, target_macs=target,
        channel_ratio=args.channel_ratio, selection=args.selection, max_layer_ratio=args.max_layer_ratio,
        group_reduction=args.group_reduction, domino=args.domino, calibration_samples=args.calibration_samples,
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
    return 0


def cmd_apply(args) -> int:
    from prunevo.transfer.apply import apply_formula

    _, result = apply_formula(args.formula, _transfer_config(args), Path(args.output), seed=args.seed,
                              progress=not args.no_progress)
    print((Path(args.output) / "report.md").read_text())
    return 0


def cmd_compare(args) -> int:
    from prunevo.transfer.compare import compare_criteria

    result = compare_criteria(args.formulas, _transfer_config(args), tuple(range(args.seeds)), Path(args.output),
                              progress=not args.no_progress)
    print(result.markdown)
    print(f"wrote {Path(args.output) / 'compare.md'}, compare.json, compare.png ({result.wall_s:.0f} s)")
    return 0


TRANSFER_COMMANDS = {"train": cmd_train, "apply": cmd_apply, "compare": cmd_compare}
