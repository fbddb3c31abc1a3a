"""CPU-seconds and peak memory of one pruning with reconstruction on a big model, side by side with the same
pruning without it.

Each row is one fresh process running ``apply_formula`` (ResNet-50 at 224 px on FakeData by default, random
weights with randomized BatchNorm statistics, ``l1`` to 50% of the MACs, one-shot, no latency) with and without
``reconstruct``: its peak RSS, the process CPU-seconds and the wall seconds of the reconstruction step.  Rows at
several calibration sizes show what grows with the images (time) and what does not (memory: each layer streams
``--calibration-batch`` images at a time).  With ``--device cuda`` the rows also give the GPU's peak allocated
memory (the passes and the float64 sums run there; the solves too, except a singular system's fallback).

    python benchmarks/reconstruction_cost.py                          # ResNet-50, 224 px, 16 and 32 images
    python benchmarks/reconstruction_cost.py --model resnet18 --image-size 64 --samples 32 64   # quick check
    python benchmarks/reconstruction_cost.py --device cuda --samples 64 256 --calibration-batch 0   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(args: argparse.Namespace) -> None:
    """Child mode: one apply, then one JSON line."""
    import torch

    from prunevo import FitConfig, TransferConfig, apply_formula
    from prunevo.training import Accelerator
    from prunevo.transfer.session import TransferSession
    from prunevo.transfer.setup import Setup

    torch.set_num_threads(args.threads)
    config = TransferConfig(setup=Setup(model=args.model, dataset="fakedata", image_size=args.image_size),
                            accelerator=Accelerator(args.device), target_macs=0.5, finetune=FitConfig(epochs=0),
                            latency=None,
                            calibration_samples=args.one_samples, calibration_batch=args.batch or None,
                            reconstruct=args.one == "reconstruct")
    session = TransferSession(config)
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu = before.ru_utime + before.ru_stime
    start = time.perf_counter()
    _, result = apply_formula("l1", config, session=session)
    after = resource.getrusage(resource.RUSAGE_SELF)
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    print(json.dumps({"cpu_s": after.ru_utime + after.ru_stime - cpu, "wall_s": time.perf_counter() - start,
                      "reconstruct_s": result.wall_s.get("reconstruct", 0.0), "peak_gb": after.ru_maxrss / 2**20,
                      "layers": (result.reconstruction or {}).get("layers", 0), "gpu_gb": gpu,
                      "error_before": (result.reconstruction or {}).get("error_before"),
                      "error_after": (result.reconstruction or {}).get("error_after")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 32], help="calibration images per row")
    parser.add_argument("--calibration-batch", dest="batch", type=int, default=8,
                        help="images per reconstruction pass; 0: as many as 256 MB of rows allow "
                             "(the default of apply)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-samples", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    print(f"{args.model} at {args.image_size} px, l1 to 50% of the MACs, one-shot, calibration batch "
          f"{args.batch or 'auto'}, {args.threads} threads, {args.device}")
    print("| calibration images | reconstruction | process CPU-s | wall s | reconstruct s | layers refitted | "
          "peak RSS GB | peak GPU GB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for samples in args.samples:
        rows = {}
        for mode in ("plain", "reconstruct"):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--image-size", str(args.image_size),
                                  "--device", args.device,
                                  "--calibration-batch", str(args.batch), "--threads", str(args.threads), "--one",
                                  mode, "--one-samples", str(samples)], capture_output=True, text=True, check=True)
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = rows[mode]
            print(f"| {samples} | {'yes' if mode == 'reconstruct' else 'no'} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} | "
                  f"{r['reconstruct_s']:.1f} | {r['layers']} | {r['peak_gb']:.2f} | {r['gpu_gb']:.2f} |", flush=True)
        ratio = rows["reconstruct"]["cpu_s"] / max(1e-9, rows["plain"]["cpu_s"])
        print(f"|  | ratio | {ratio:.1f}x | | | | | |", flush=True)


if __name__ == "__main__":
    main()
