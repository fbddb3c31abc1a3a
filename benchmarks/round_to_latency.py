"""Latency of channel-pruned torchvision nets with and without channel rounding (``--round-to``).

For each model: the unpruned net, then L1 pruning to 50% of the MACs (layer-wise) with every ``--round-to``
value, all measured side by side in one process on one device (``torch.utils.benchmark`` through prunevo's
latency harness; on CUDA: cuDNN autotuned, channels_last and bf16 autocast as ``prunevo apply`` uses them).
Weights are random (latency does not depend on them), data is FakeData at ``--image-size``, no fine-tuning.

    python benchmarks/round_to_latency.py --device cuda --models resnet18 resnet50 mobilenet_v2
    python benchmarks/round_to_latency.py --device cpu --models resnet18 --batches 1 8   # smoke run

Prints one row per (model, round_to): MACs kept, widths that are not a multiple of 8, latency per batch size
and the ratio to the unpruned net (below 1 = faster).
"""
from __future__ import annotations

import argparse
import copy

from prunevo import FitConfig, LatencySpec, TransferConfig, apply_formula
from prunevo.transfer.session import TransferSession
from prunevo.pruning.latency import measure_latency
from prunevo.training import Accelerator
from prunevo.transfer.setup import Setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    args = parser.parse_args()
    spec = LatencySpec(batch_sizes=tuple(args.batches), threads=args.threads)
    batch_cols = " | ".join(f"b{b} ms (x unpruned)" for b in args.batches)
    print(f"device {args.device}, {args.image_size} px, {args.target_macs:.0%} MACs, l1, layer-wise\n")
    print(f"| model | round_to | MACs kept | widths not x8 | {batch_cols} |")
    print("|---|---:|---:|---:|" + "---:|" * len(args.batches), flush=True)
    for model in args.models:
        config = TransferConfig(setup=Setup(model=model, dataset="fakedata", image_size=args.image_size),
                                accelerator=Accelerator(args.device), target_macs=args.target_macs,
                                finetune=FitConfig(epochs=0), latency=None, calibration_samples=16)
        session = TransferSession(config)
        device, channels_last = session.accel.device, session.accel.use_channels_last

        def latency(net):
            return measure_latency(net, session.input_shape, device, spec, channels_last=channels_last).median_ms

        base = latency(copy.deepcopy(session.model))
        print(f"| {model} unpruned | | 100% | | " + " | ".join(f"{base[b]:.2f} (1.00)" for b in args.batches) + " |")
        for round_to in args.round_to:
            rounded = session.with_settings(round_to=round_to)
            pruned, result = apply_formula("l1", rounded.config, session=rounded)
            after = latency(pruned)
            odd = sum(1 for kept, _ in result.kept.values() if kept % 8)
            cells = " | ".join(f"{after[b]:.2f} ({after[b] / base[b]:.2f})" for b in args.batches)
            print(f"| {model} | {round_to} | {result.macs_fraction:.1%} | {odd}/{len(result.kept)} | {cells} |",
                  flush=True)


if __name__ == "__main__":
    main()
