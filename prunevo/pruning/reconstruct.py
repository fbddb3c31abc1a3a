"""Reconstruction: after channels are removed, refit every layer that read them so that it reproduces its unpruned
output on calibration images (ridge-regularised least squares over its remaining inputs, bias included).

The method is He et al.'s channel-pruning reconstruction (ICCV 2017) and ThiNet's (Luo et al., ICCV 2017):
layers are refitted one by one in execution order, each on the inputs the *pruned* network actually feeds it
(those of the layers before it already refitted), so that errors do not pile up; the target is the unpruned
network's output of the same layer on the same images.  The structured Optimal Brain Surgeon line (OBC, ZipLM,
SparseGPT) solves the same least-squares problem per layer with the inverse of ``XᵀX``.  BatchNorm statistics
are re-estimated afterwards by the caller (``training.recalibrate_bn``).

Reconstruction works on the *masked* network (``pruning.masks``): its removed channels are exact zeros, so it
computes what the physically pruned one computes, and refitted weights survive physical removal unchanged
(``physical.prune_model`` drops only zeroed rows and columns).  Per layer it streams the calibration images in
chunks and accumulates ``XᵀX`` and ``XᵀY`` (float64, sizes set by the layer, not the images), so memory holds
one chunk's activations whatever the number of images.

What a layer's rows are:
- ``nn.Linear``: one row per input vector (leading axes flattened), its kept input columns;
- ``nn.Conv1d``/``nn.Conv2d``: one row per output position, its kept input channels' ``k×k`` patches
  (``unfold``; padding modes other than zeros are applied first).  A grouped convolution is refitted slice by
  slice (each slice's outputs read only its inputs); a depthwise convolution whose input channel is removed
  loses that output too, so it has nothing to refit.

Intercept: a layer with a bias refits it; a layer without one that feeds a BatchNorm is fitted on centered data
and the intercept moves into the BatchNorm's running mean (which re-estimation then replaces); any other layer
is fitted without one.
"""
from __future__ import annotations

import time
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as nnf
from torch import nn

from prunevo.errors import ModelError, PrunevoError
from prunevo.progress import track
from prunevo.pruning.groups import CONV_TYPES, PRODUCER_TYPES, ChannelGroup
from prunevo.pruning.masks import apply_masks
from prunevo.utils import probe

_WIDE = torch.float64
# images per pass when the caller leaves it open: as many as keep one layer's float64 regression rows (patches and
# targets) under this many bytes; small nets then pass every calibration image at once, which is several times
# faster on a CPU than chunks of 8, and ResNet-50 at 224 px passes about 16
ROWS_MEMORY = 256 * 2**20
# the unpruned network's outputs of every layer to refit, for all calibration images, are kept from one pass when
# they take at most this many bytes (ResNet-20 at 28 px with 256 images: 150 MB), which saves one partial forward
# pass per layer and chunk; larger ones (ResNet-50 at 224 px) are recomputed layer by layer
TARGETS_MEMORY = 1024 * 2**20


@dataclass(frozen=True, kw_only=True)
class Reconstruction:
    """How the layers that read removed channels are refitted (``reconstruct``).

    Attributes:
        ridge: the ridge penalty, relative to the mean diagonal of the layer's centered ``XᵀX`` (scale-free:
            ``λ = ridge · trace(XᵀX) / d``); 0 is plain least squares (a singular system then takes the
            minimum-norm solution).
        positions: output positions per image a convolution's fit reads, the same randomly chosen ones for every
            image (He et al. sample 10 per image); None reads them all.  Fewer are faster on large inputs.

    Raises:
        PrunevoError: a negative ridge or fewer than 1 position.

    Example:
        >>> from prunevo.pruning.reconstruct import Reconstruction
        >>> Reconstruction(ridge=1e-2).positions is None
        True
    """

    ridge: float = 1e-3
    positions: int | None = None

    def __post_init__(self) -> None:
        if not self.ridge >= 0:
            raise PrunevoError(f"{{param:reconstruction.ridge}} must be >= 0, got {self.ridge}")
        if self.positions is not None and self.positions < 1:
            raise PrunevoError(f"{{param:reconstruction.positions}} must be >= 1, got {self.positions}")


@dataclass
class LayerFit:
    """One refitted layer.

    Attributes:
        layer: its name in ``model.named_modules()``.
        inputs: its input channels (or features), and ``kept`` of them after pruning.
        rows: the least-squares rows it was fitted on (positions × images).
        error_before, error_after: the squared error of its output against the unpruned layer's on those rows,
            relative to the output's variance (0 = exact), before and after the refit.
    """

    layer: str
    inputs: int
    kept: int
    rows: int
    error_before: float
    error_after: float


@dataclass
class ReconstructionReport:
    """What ``reconstruct`` did: the refitted layers in execution order and the wall-clock seconds it took."""

    layers: list[LayerFit] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "layers": [asdict(f) for f in self.layers]}

    def summary(self) -> dict:
        """Seconds, layers refitted and their mean relative output error before and after (what reports show)."""
        return {"seconds": round(self.seconds, 3), "layers": len(self.layers),
                "error_before": round(self.error_before, 6), "error_after": round(self.error_after, 6)}

    @property
    def error_before(self) -> float:
        """Mean relative output error of the refitted layers before the refit (nan when none was refitted)."""
        return sum(f.error_before for f in self.layers) / len(self.layers) if self.layers else float("nan")

    @property
    def error_after(self) -> float:
        return sum(f.error_after for f in self.layers) / len(self.layers) if self.layers else float("nan")


@dataclass
class _Consumer:
    """A layer that reads removed channels: which inputs were removed and which outputs remain."""

    name: str
    removed_inputs: set[int]
    removed_outputs: set[int]


def consumers_of_removed(model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor]) -> list[_Consumer]:
    """The convolutions and linear layers that read a channel ``keep`` removes (from the groups' Torch-Pruning
    index pairs, as ``masks.MaskSet`` reads them), with their removed input and output indices."""
    modules = dict(model.named_modules())
    inputs: dict[str, set[int]] = {}
    outputs: dict[str, set[int]] = {}
    for group, mask in zip(groups, keep):
        removed_root = set(torch.nonzero(~mask).flatten().tolist())
        if not removed_root:
            continue
        for name, kind, pairs in group.touches:
            if not isinstance(modules[name], PRODUCER_TYPES):
                continue
            idx = {i for i, r in pairs if r in removed_root}
            (inputs if kind == "in" else outputs).setdefault(name, set()).update(idx)
    return [_Consumer(name, removed, outputs.get(name, set())) for name, removed in inputs.items() if removed]


class _Stop(Exception):
    """Ends a forward pass once the layer being refitted has run (the rest of the network is not needed)."""


@contextmanager
def _captured(model: nn.Module, name: str, calls: int, what: str) -> Iterator[list[torch.Tensor]]:
    """A list that collects ``name``'s inputs (``what="input"``) or outputs per call during a forward pass of
    ``model``, which stops after the ``calls``-th call."""
    seen: list[torch.Tensor] = []

    def hook(_module, inputs, output):
        seen.append((inputs[0] if what == "input" else output).detach())
        if len(seen) == calls:
            raise _Stop
    handle = dict(model.named_modules())[name].register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _run(model: nn.Module, x: torch.Tensor) -> None:
    try:
        model(x)
    except _Stop:
        pass


class _Layer:
    """One consumer's least-squares problems (one per slice of a grouped convolution): the rows its inputs make,
    the accumulated sums, the solve and the write-back."""

    def __init__(self, module: nn.Module, consumer: _Consumer, bn: nn.Module | None, spec: Reconstruction):
        self.module, self.consumer, self.spec = module, consumer, spec
        weight = module.weight
        self.is_conv = isinstance(module, CONV_TYPES)
        self.slices = module.groups if self.is_conv else 1
        self.in_per, self.out_per = weight.shape[1], weight.shape[0] // self.slices  # per slice
        self.bn = bn if (bn is not None and getattr(bn, "running_mean", None) is not None) else None
        self.bias = getattr(module, "bias", None) is not None
        self.intercept = self.bias or self.bn is not None
        # per slice: kept input channels (local to the slice) and kept output rows (global)
        self.problems = []
        for s in range(self.slices):
            ins = range(s * self.in_per, (s + 1) * self.in_per)
            kept_in = [i - s * self.in_per for i in ins if i not in consumer.removed_inputs]
            kept_out = [o for o in range(s * self.out_per, (s + 1) * self.out_per) if o not in consumer.removed_outputs]
            if len(kept_in) == self.in_per or not kept_in or not kept_out:
                continue  # nothing removed here, nothing left to read with, or nothing left to write
            self.problems.append({"slice": s, "in": kept_in, "out": kept_out, "n": 0})
        self.positions: dict[int, torch.Tensor] = {}  # output positions L -> the sampled ones

    def rows(self, x: torch.Tensor, problem: dict) -> torch.Tensor:
        """``[rows, kept·k]``: the layer's input at the slice's kept channels as regression rows."""
        s = problem["slice"]
        if not self.is_conv:
            return x.reshape(-1, x.shape[-1])[:, problem["in"]]
        conv = self.module
        x = x[:, s * self.in_per:(s + 1) * self.in_per][:, problem["in"]]
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        x = nnf.pad(x, conv._reversed_padding_repeated_twice, mode=mode)
        if x.dim() == 3:  # Conv1d as a Conv2d of height 1
            x = x.unsqueeze(2)
            kernel, dilation, stride = (1, *conv.kernel_size), (1, *conv.dilation), (1, *conv.stride)
        else:
            kernel, dilation, stride = conv.kernel_size, conv.dilation, conv.stride
        patches = nnf.unfold(x, kernel, dilation=dilation, stride=stride)  # [n, kept·k, L]
        return self._sampled(patches).transpose(1, 2).reshape(-1, patches.shape[1])

    def targets(self, y: torch.Tensor, problem: dict) -> torch.Tensor:
        """``[rows, kept outputs]``: the unpruned layer's output at the slice's kept rows."""
        if not self.is_conv:
            return y.reshape(-1, y.shape[-1])[:, problem["out"]]
        y = y[:, problem["out"]].flatten(2)  # [n, c, L]
        return self._sampled(y).transpose(1, 2).reshape(-1, len(problem["out"]))

    def _sampled(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` ``[n, f, L]`` at the chosen output positions (the same for every image, seeded by the layer)."""
        if self.spec.positions is None or t.shape[2] <= self.spec.positions:
            return t
        size = t.shape[2]
        if size not in self.positions:  # a module called at several sizes (weight sharing) samples each its way
            rng = torch.Generator().manual_seed(zlib.crc32(f"{self.consumer.name}:{size}".encode()))
            self.positions[size] = torch.randperm(size, generator=rng)[:self.spec.positions].sort().values
        return t[:, :, self.positions[size].to(t.device)]

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate one chunk: ``x`` the pruned network's input to the layer, ``y`` the unpruned layer's output."""
        for p in self.problems:
            rows, target = self.rows(x, p), self.targets(y, p)
            if rows.shape[0] != target.shape[0]:
                raise ModelError(f"reconstruction cannot reproduce how layer {self.consumer.name!r} maps its input to "
                                 f"its output ({rows.shape[0]} input patches, {target.shape[0]} output positions)")
            sums = {"xx": rows.T @ rows, "xy": rows.T @ target, "x": rows.sum(0), "y": target.sum(0),
                    "yy": target.square().sum(0)}
            for key, value in sums.items():
                p[key] = value.to(_WIDE) if key not in p else p[key] + value.to(_WIDE)
            p["n"] += rows.shape[0]

    @torch.no_grad()
    def solve(self) -> LayerFit:
        """Refit the kept weights (and intercept) of every slice in place; returns the fit's record."""
        before = after = variance = 0.0
        for p in self.problems:
            n = p["n"]
            w_old, b_old = self._current(p)
            xx, xy = p["xx"], p["xy"]
            mx, my = p["x"] / n, p["y"] / n
            if self.intercept:  # centered: the intercept is not penalized
                sxx, sxy = xx - n * torch.outer(mx, mx), xy - n * torch.outer(mx, my)
            else:
                sxx, sxy = xx, xy
            d = sxx.shape[0]
            lam = self.spec.ridge * float(torch.trace(sxx)) / d
            system = sxx + lam * torch.eye(d, dtype=_WIDE, device=sxx.device)
            try:
                w_new = torch.linalg.solve(system, sxy)
            except RuntimeError:  # singular (ridge 0 on collinear inputs): the minimum-norm solution
                w_new = torch.linalg.lstsq(system.cpu(), sxy.cpu(), driver="gelsd").solution.to(sxy.device)
            b_new = my - mx @ w_new if self.intercept else torch.zeros_like(my)
            variance += float(p["yy"].sum() - p["y"].square().sum() / n)
            before += float(self._error(p, w_old, b_old))
            after += float(self._error(p, w_new, b_new))
            self._write(p, w_new, b_new)
        inputs = self.module.weight.shape[1] * self.slices
        scale = max(variance, 1e-30)
        return LayerFit(self.consumer.name, inputs, inputs - len(self.consumer.removed_inputs), self.problems[0]["n"],
                        max(0.0, before / scale), max(0.0, after / scale))

    def _current(self, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's present weights ``[kept·k, outputs]`` and intercept on the slice's kept inputs and rows."""
        weight = self.module.weight.detach().to(_WIDE)
        w = weight[p["out"]][:, p["in"]].reshape(len(p["out"]), -1).T
        if self.bias:
            b = self.module.bias.detach().to(_WIDE)[p["out"]]
        else:
            b = torch.zeros(len(p["out"]), dtype=_WIDE, device=weight.device)
        return w, b

    @staticmethod
    def _error(p: dict, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Σ ‖x w + b − y‖² over the rows, from the accumulated sums."""
        return (torch.sum(w * (p["xx"] @ w)) + 2 * torch.dot(b, p["x"] @ w) + p["n"] * b.square().sum()
                - 2 * torch.sum(w * p["xy"]) - 2 * torch.dot(b, p["y"]) + p["yy"].sum())

    def _write(self, p: dict, w: torch.Tensor, b: torch.Tensor) -> None:
        weight = self.module.weight
        out = torch.tensor(p["out"], device=weight.device)
        ins = torch.tensor(p["in"], device=weight.device)
        block = w.T.reshape(len(p["out"]), len(p["in"]), *weight.shape[2:]).to(weight.dtype)
        rows = weight.data[out]
        rows[:, ins] = block
        weight.data[out] = rows
        if self.bias:
            self.module.bias.data[out] = b.to(self.module.bias.dtype)
        elif self.bn is not None:  # BN(u + b) with running mean μ is BN(u) with running mean μ - b
            self.bn.running_mean.data[out] -= b.to(self.bn.running_mean.dtype)


def _followed_by_bn(groups: list[ChannelGroup], modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    return {m.layer: modules[m.bn] for g in groups for m in g.members if m.bn is not None}


@dataclass
class _Plan:
    """What one probe pass says of the layers to refit: their order, calls per pass and per-image sizes."""

    order: list[str]  # in the order a forward pass first calls them (then those it never calls)
    calls: dict[str, int]  # how many times each runs per pass
    row_bytes: int  # the most bytes one image's float64 regression rows take in one of them (an upper bound)
    target_bytes: int  # one image's float32 outputs of all of them


def _plan(model: nn.Module, names: list[str], example: torch.Tensor) -> _Plan:
    modules = dict(model.named_modules())
    first: list[str] = []
    counts: dict[str, int] = {}
    rows: dict[str, int] = {}
    outputs = 0

    def record(name, inputs, output):
        nonlocal outputs
        if name not in counts:
            first.append(name)
        counts[name] = counts.get(name, 0) + 1
        weight = modules[name].weight
        kernel = int(torch.tensor(weight.shape[2:]).prod()) if weight.dim() > 2 else 1
        rows[name] = rows.get(name, 0) + 8 * (inputs[0].numel() * kernel + output.numel())
        outputs += 4 * output.numel()
    probe(model, example[:1], {n: modules[n] for n in names}, record)
    return _Plan(first + [n for n in names if n not in counts], counts, max(rows.values(), default=1), outputs)


def _all_targets(reference: nn.Module, plan: _Plan, x: torch.Tensor, step: int, device: str
                 ) -> dict[str, list[list[torch.Tensor]]]:
    """Every layer's unpruned outputs, per chunk of ``step`` images and per call, from one pass of ``reference``."""
    modules = dict(reference.named_modules())
    out: dict[str, list[list[torch.Tensor]]] = {name: [] for name in plan.calls}
    handles = [modules[name].register_forward_hook(lambda _m, _i, o, name=name: out[name][-1].append(o.detach()))
               for name in plan.calls]
    try:
        for first in range(0, len(x), step):
            for seen in out.values():
                seen.append([])
            reference(x[first:first + step].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return out


def _refusal(name: str, module: nn.Module) -> str | None:
    """Why layer ``name`` cannot be refitted (None: it can).  A subclass whose forward is not its base class's
    (timm's ``StdConv2d`` standardizes its weight, ``Conv2dSame`` pads in its forward) would not compute what
    the refitted weights say."""
    base = next((t for t in (nn.Conv1d, nn.Conv2d, nn.Linear) if isinstance(module, t)), None)
    if base is None:
        return (f"reconstruction refits convolutions (1-d, 2-d) and linear layers; layer {name!r}, which reads "
                f"removed channels, is a {type(module).__name__}")
    if type(module).forward is not base.forward:
        return (f"layer {name!r} reads removed channels and is a {type(module).__name__}, whose forward is not "
                f"{base.__name__}'s: reconstruction refits only layers that compute with their weight as it is "
                f"stored; allowed: keep the channels it reads ({{param:ignore_layers}} with the layers that produce "
                f"them) or prune without reconstruction")
    return None


@torch.no_grad()
def reconstruct(reference: nn.Module, model: nn.Module, groups: list[ChannelGroup], keep: list[torch.Tensor],
                x: torch.Tensor, *, spec: Reconstruction = Reconstruction(), batch_size: int | None = None,
                device: str = "cpu", progress: bool = False) -> ReconstructionReport:
    """Refit, in place, the layers of ``model`` that read the channels ``keep`` removes (``model`` is masked by
    ``keep`` first: pass a copy of the unpruned network, then prune it physically with ``physical.prune_model``).

    Args:
        reference: the unpruned network (not changed): its layers' outputs are the targets.
        model: a copy of ``reference`` with the same module names; refitted and masked in place.
        groups: the channel groups ``keep`` refers to (``pruning.groups.find_groups``).
        keep: per group, a ``[C]`` bool mask of the channels kept.
        x: calibration images ``[N, ...]`` (the pruned network's inputs and the targets are computed on them).
        spec: ridge penalty and positions (``Reconstruction``).
        batch_size: images per pass (memory holds one chunk's activations and regression rows, and the layer's
            ``XᵀX``); None: as many as keep the rows under ``ROWS_MEMORY``.
        device: where the passes run.
        progress: a bar over the refitted layers.

    Returns:
        The ``ReconstructionReport``: each refitted layer's relative output error before and after.

    Raises:
        ModelError: a layer that reads removed channels and cannot be refitted (named; see ``_refusal``).

    Source: He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017 (least
    squares per layer on the pruned network's inputs); Luo et al., ThiNet, ICCV 2017.
    """
    if reference is model:
        raise ValueError("reconstruct needs the unpruned network and a copy of it, not the same module twice")
    start = time.perf_counter()
    apply_masks(model, groups, keep)
    modules = dict(model.named_modules())
    consumers = consumers_of_removed(model, groups, keep)
    report = ReconstructionReport()
    if not consumers:
        return report
    for c in consumers:
        problem = _refusal(c.name, modules[c.name])
        if problem:
            raise ModelError(problem)
    by_name = {c.name: c for c in consumers}
    bns = _followed_by_bn(groups, modules)
    home = [next(m.parameters()).device for m in (reference, model)]
    modes = [m.training for m in (reference, model)]
    try:
        reference.to(device).eval()
        model.to(device).eval()
        plan = _plan(model, [c.name for c in consumers], x[:1].to(device))  # wherever the networks were
        calls = plan.calls
        step = batch_size or max(1, min(len(x), ROWS_MEMORY // plan.row_bytes))
        kept = _all_targets(reference, plan, x, step, device) if plan.target_bytes * len(x) <= TARGETS_MEMORY else None
        for name in track(plan.order, "reconstruct", "layer", progress, leave=False):
            if calls.get(name, 0) == 0:
                continue  # never runs on this input: nothing to fit
            layer = _Layer(modules[name], by_name[name], bns.get(name), spec)
            if not layer.problems:
                continue
            for chunk, first in enumerate(range(0, len(x), step)):
                xb = x[first:first + step].to(device)
                with ExitStack() as stack:
                    if kept is None:
                        targets = stack.enter_context(_captured(reference, name, calls[name], "output"))
                        _run(reference, xb)
                    else:
                        targets = kept[name][chunk]
                    inputs = stack.enter_context(_captured(model, name, calls[name], "input"))
                    _run(model, xb)
                for xin, yout in zip(inputs, targets):
                    layer.add(xin.double(), yout.double())
            if kept is not None:
                del kept[name]  # each layer's targets are read once
            report.layers.append(layer.solve())
        apply_masks(model, groups, keep)  # refitted rows of removed outputs (none are written) stay zero
    finally:
        for m, where, mode in zip((reference, model), home, modes):
            m.to(where).train(mode)
    report.seconds = time.perf_counter() - start
    return report
