"""Peak memory and time of scoring a big model: streamed calibration statistics against the whole batch.

Each row is one fresh process running ``apply_formula`` (ResNet-50 at 224 px on FakeData by default,
random weights, 50% MACs, no fine-tuning, no latency): its peak RSS, the dependency-graph build, and the
``prune`` step (reading the calibration images, the calibration pass, scoring, selection and physical
removal). ``--calibration-batch`` rows stream the batch in chunks; the ``whole`` rows pass every image at
once, as before streaming (their sample count is kept small enough not to exhaust this machine).

    python benchmarks/calibration_memory.py                       # ResNet-50, 224 px, 256 images
    python benchmarks/calibration_memory.py --model resnet18 --image-size 64 --samples 64   # quick check
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

FORMULAS = ["l1(W)", "abs(mean(F * G))", "var(cmean(F)) / (mean(cvar(F)) + 0.05)"]


def one(args: argparse.Namespace) -> None:
    """Child mode: one apply, then one JSON line."""
    import torch

    from prunevo import FitConfig, TransferConfig, apply_formula
    from prunevo.transfer.session import TransferSession
    from prunevo.pruning.groups import find_groups
    from prunevo.training import Accelerator
    from prunevo.transfer.setup import Setup

    torch.set_num_threads(args.threads)
    config = TransferConfig(setup=Setup(model=args.model, dataset="fakedata", image_size=args.image_size),
                            accelerator=Accelerator("cpu"), target_macs=0.5, finetune=FitConfig(epochs=0), latency=None,
                            calibration_samples=args.samples, calibration_batch=args.batch)
    session = TransferSession(config)
    start = time.perf_counter()
    find_groups(session.model, session.example)  # what the session's dependency graph cost
    graph_s = time.perf_counter() - start
    _, result = apply_formula(args.one, config, session=session)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"graph_s": graph_s, "prune_s": result.wall_s["prune"], "peak_gb": peak_gb,
                      "macs": result.macs_fraction}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=256, help="calibration images of the streamed rows")
    parser.add_argument("--calibration-batch", dest="batch", type=int, default=8)
    parser.add_argument("--whole-samples", type=int, default=32,
                        help="calibration images of the whole-batch rows (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--formulas", nargs="+", default=FORMULAS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    print(f"{args.model}, {args.image_size} px, CPU ({args.threads} threads), 50% MACs\n")
    print("| formula | calibration | peak RSS GB | graph s | prune s | graph + prune s |")
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for formula in args.formulas:
        runs = [(args.samples, args.batch, f"{args.samples} images, streamed by {args.batch}")]
        if args.whole_samples:
            runs.append((args.whole_samples, args.whole_samples, f"{args.whole_samples} images, whole batch"))
        for samples, batch, label in runs:
            command = [sys.executable, __file__, "--one", formula, "--model", args.model, "--image-size",
                       str(args.image_size), "--samples", str(samples), "--calibration-batch", str(batch),
                       "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| `{formula}` | {label} | failed ({done.returncode}): {done.stderr.strip()[-200:]} | | | |")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| `{formula}` | {label} | {row['peak_gb']:.2f} | {row['graph_s']:.2f} | {row['prune_s']:.1f} | "
                  f"{row['graph_s'] + row['prune_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
