"""Models for transfer: torchvision classifiers by name, the zoo's small nets, or a user's own model.

``--model`` accepts
- a torchvision classification model name (``resnet18``, ``vgg16_bn``, ``mobilenet_v2``...), randomly
  initialized (no weights can be downloaded; train one with ``prunevo train`` or pass ``--checkpoint``);
- ``small-vgg``, ``small-resnet``, ``lenet5`` (the nets the fitness tasks use);
- ``timm:NAME``, a timm architecture (``timm:resnet50d``, ``timm:efficientnet_b0``) built by
  ``timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...)``: no weights are downloaded,
  it reads the data's own channel count (or a checkpoint's) and, like every timm model, any input size;
- ``module:function``, a Python function returning an ``nn.Module`` (called with ``num_classes=`` when it
  accepts it or ``**kwargs``) whose forward returns the logits, or a tuple/list/dict holding them
  (``logits_of``); ``module`` is imported as Python would from the working directory, or given
  as a file, ``path/to/models.py:function``;
- a whole-model file saved with ``torch.save(model)`` (``.pt``/``.pth``): a pickle, so only load files you trust;
  the classes it refers to are imported from the Python path, else the working directory or the file's folder;
  ``prunevo apply``'s ``pruned_model.pt`` and ``pruned_weights.pt`` (rebuilt by ``pruning.saved.load_pruned``, in
  ``transfer.setup``) too, not its
  ``pruned_model.pt2`` (a torch.export graph has no layers left to prune: the refusal names the file to use).

Only classifiers are supported: a model whose output is not logits ``[N, classes]`` (a segmentation model's
per-pixel map) is refused when it is built.  Weights stored in another floating type (float16, bfloat16, as
YOLOv5 saves them, or float64) are computed in float32; ``source_dtype`` keeps the type they came in, in which
``prunevo apply`` saves the pruned model.

The small-input ("cifar") stem adapts ImageNet models to 28-64 px images: 3x3 stride-1 first convolution,
no stem max-pooling, and a global-average-pooled single linear classifier for VGG.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from prunevo.errors import ModelError, first_line
from prunevo.utils import probe
from prunevo.zoo.nets import SMALL_NETS, build_small_net

STEMS = ("auto", "imagenet", "cifar")
SMALL_NET_NAMES = {f"small-{k}" if k in ("vgg", "resnet") else k: k for k in SMALL_NETS}
SMALL_INPUT_MAX = 64  # "auto" picks the cifar stem at or below this many pixels
AUX_HEAD_MODELS = ("googlenet", "inception_v3")  # built without their training-only auxiliary classifiers
TIMM_PREFIX = "timm:"  # before module:function: a user module called timm is not looked for
TIMM_INSTALL = "pip install 'prunevo[timm]'"
# the model attribute that records the floating type a user's weights came in when it is not float32
SOURCE_DTYPE_ATTR = "prunevo_source_dtype"
PRUNED_WEIGHTS_FORMAT = "prunevo-pruned/"  # pruned_weights.pt (transfer.apply), any version
EXPORT_MARKERS = ("archive_format", "serialized_exported_program.json")  # torch.export archives, new and old


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _cifar_stem(model: nn.Module, name: str) -> nn.Module:
    """Keep spatial resolution in the stem so that 28-64 px inputs survive the network's strides."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif name.startswith("vgg"):
        pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
        model.features[pools[-1]] = nn.Identity()  # 32 px: four halvings leave 2x2, not 1x1
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(model.classifier[0].in_features // 49, model.classifier[-1].out_features)
    elif name.startswith("densenet"):
        conv0 = model.features.conv0
        model.features.conv0 = nn.Conv2d(3, conv0.out_channels, 3, 1, 1, bias=False)
        model.features.pool0 = nn.Identity()
    else:  # mobilenet, efficientnet, regnet...: the first strided convolution keeps its resolution
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ModelError(f"{name} has no convolution to adapt to small inputs")
        first.stride = (1, 1)
    return model


def _torchvision_model(name: str, num_classes: int, small_input: bool) -> nn.Module:
    import torchvision

    try:
        # auxiliary heads run only in training mode (a second output, a branch eval-mode tracing never sees);
        # without weights torchvision builds these nets without them
        extra = {"aux_logits": False, "init_weights": True} if name in AUX_HEAD_MODELS else {}
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **extra)
    except Exception as exc:  # builders reject some argument combinations with various types
        raise ModelError(f"torchvision cannot build {name!r} with {num_classes} classes: {exc}") from None
    if small_input:
        model = _cifar_stem(model, name)
    _disable_inplace(model)
    return model


def is_timm(name: str) -> bool:
    return name.startswith(TIMM_PREFIX)


def _timm_model(name: str, num_classes: int, in_chans: int) -> nn.Module:
    """timm's architecture ``timm:NAME``, randomly initialized: ``pretrained=False`` downloads nothing."""
    arch = name[len(TIMM_PREFIX):]
    try:
        import timm
    except ImportError:
        raise ModelError(f"{{param:model={name}}} needs timm, which is not installed; {TIMM_INSTALL}") from None
    if not arch or not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*") if arch else []
        close = close or difflib.get_close_matches(arch, timm.list_models(), n=8)
        shown = f"close matches: {', '.join(close[:8])}" if close else "no close match"
        raise ModelError(f"unknown timm model {arch!r} ({shown}); allowed: timm:NAME with a NAME from "
                         f"timm.list_models()")
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    except Exception as exc:  # builders reject some argument combinations with various types
        raise ModelError(f"timm cannot build {arch!r} with {num_classes} classes and {in_chans} input channels: "
                         f"{type(exc).__name__}: {first_line(exc)}") from None
    _disable_inplace(model)
    return model


def _disable_inplace(model: nn.Module) -> None:
    """Statistics hooks must see each activation before the next in-place op overwrites it."""
    for m in model.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False


def _import_module(module_name: str, fallback_file: str | None = None):
    """``module_name`` as ``python -m`` would import it (the working directory on the path), or the Python
    file ``module_name`` names, or, when neither imports, ``fallback_file`` (where it was found when saved)."""
    if module_name.endswith(".py"):
        return _module_from_file(Path(module_name))
    def itself_missing(exc: ModuleNotFoundError) -> bool:  # not a module that the user's module imports
        return exc.name is not None and module_name.split(".")[0] == exc.name.split(".")[0]

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not itself_missing(exc):
            raise
        missing = exc
    cwd = os.getcwd()
    if cwd not in sys.path:  # the console script, unlike `python -m`, leaves it out; appended: never shadows
        sys.path.append(cwd)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not itself_missing(exc):
                raise
    if fallback_file and Path(fallback_file).is_file():
        return _module_from_file(Path(fallback_file), module_name)
    raise missing


def _module_from_file(path: Path, name: str | None = None):
    if not path.is_file():
        raise ModuleNotFoundError(f"no file {path}")
    name = name or path.stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling the model's classes refers to them by module name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def user_module_file(spec: str) -> str | None:
    """The absolute path of the file that defines a ``module:function`` model (None for other models)."""
    if ":" not in spec or spec in SMALL_NET_NAMES or is_timm(spec):
        return None
    module_name = spec.rsplit(":", 1)[0]
    if module_name.endswith(".py"):
        return str(Path(module_name).resolve())
    module = sys.modules.get(module_name)
    return str(Path(module.__file__).resolve()) if getattr(module, "__file__", None) else None


LOGITS_KEYS = ("logits", "out")  # where a dict output keeps the logits (Hugging Face, torchvision segmentation)


def logits_of(output) -> torch.Tensor:
    """The logits tensor in what a model returns: the tensor itself, the first element of a tuple, named tuple
    or list, or a dict's ``logits`` or ``out`` entry.  Raises ModelError for anything else."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in LOGITS_KEYS:
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        shown = f"a dict with keys {', '.join(map(repr, list(output)[:5]))}"
    else:
        shown = f"a {type(output).__name__}"
    raise ModelError(f"the model returns {shown}; prunevo reads the logits: return a tensor, a tuple or list whose "
                     f"first element is the logits tensor, or a dict with a {' or '.join(map(repr, LOGITS_KEYS))} "
                     f"tensor")


def logits_hook(module: nn.Module, inputs, output) -> torch.Tensor:
    """A forward hook that makes a user's model return its logits tensor (see ``logits_of``); the module and
    its state dict stay as they are, and torch.export and pickling keep the hook."""
    return logits_of(output)


def _reads_logits(model: nn.Module) -> nn.Module:
    if logits_hook not in model._forward_hooks.values():
        model.register_forward_hook(logits_hook)
    return model


def _user_function(spec: str, num_classes: int, module_file: str | None = None) -> nn.Module:
    module_name, func_name = spec.rsplit(":", 1)
    try:
        func = getattr(_import_module(module_name, module_file), func_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot import the model function {spec!r} (from the working directory {os.getcwd()} "
                         f"or the Python path; or give the file: path/to/module.py:{func_name}): {exc}") from None
    try:
        params = inspect.signature(func).parameters
        takes_classes = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        model = func(num_classes=num_classes) if takes_classes else func()
    except Exception as exc:  # user code: report it, whatever it raised
        raise ModelError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return _reads_logits(model)


def _whole_model_file(path: Path) -> nn.Module:
    if _is_export_archive(path):
        raise ModelError(f"{path} is a torch.export program: its layers are graph operations, not modules the pruner "
                         f"can trace; {pruned_alternative(path)}")
    try:
        try:
            model = torch.load(path, map_location="cpu", weights_only=False)  # a pickled module: trusted files only
        except ModuleNotFoundError:
            # the classes it pickled live in the user's code: look where `python -m` would, then beside the file
            for folder in (os.getcwd(), str(path.resolve().parent)):
                if folder not in sys.path:
                    sys.path.append(folder)
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling errors come in many types
        raise ModelError(f"{path} is not a loadable whole-model file: {type(exc).__name__}: {exc} (its classes "
                         f"are imported from the Python path, the working directory and {path.resolve().parent})"
                         ) from None
    if isinstance(model, dict) and str(model.get("format", "")).startswith(PRUNED_WEIGHTS_FORMAT):
        return _pruned_weights_file(path)
    if not isinstance(model, nn.Module):
        architecture = model.get("model") if isinstance(model, dict) else None  # a prunevo checkpoint names it
        architecture = architecture if isinstance(architecture, str) else "NAME"
        raise ModelError(f"{path} holds a {type(model).__name__}, not a whole model; for a state dict use "
                         f"{{param:model={architecture}}} {{param:checkpoint={path}}}")
    return _reads_logits(model)


def _is_export_archive(path: Path) -> bool:
    """Whether ``path`` was written by ``torch.export.save`` (a zip archive without a pickled object)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.rsplit("/", 1)[-1] for n in archive.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return "data.pkl" not in names and any(marker in names for marker in EXPORT_MARKERS)


def pruned_alternative(path: Path) -> str:
    """What to give instead of a file that cannot be pruned: ``prunevo apply``'s pruned_model.pt beside it, else
    pruned_weights.pt, else the forms allowed."""
    for sibling in ("pruned_model.pt", "pruned_weights.pt"):
        if (path.parent / sibling).is_file() and path.parent / sibling != path:
            return f"use {path.parent / sibling} instead"
    return "allowed: a whole-model file saved with torch.save(model), or the architecture with a --checkpoint"


def _pruned_weights_file(path: Path) -> nn.Module:
    """``prunevo apply``'s pruned_weights.pt: rebuilt by ``pruning.saved.load_pruned``, which the pipeline's
    loaders call before the zoo (``transfer.setup``); reaching the zoo, it is refused with what to give."""
    raise ModelError(f"{path} holds the weights of a pruned model, which this step does not rebuild; "
                     f"{pruned_alternative(path)} (or prunevo.load_pruned({str(path)!r}) in Python)")


def is_pruned_weights_file(name: str) -> bool:
    """Whether ``name`` is a pruned_weights.pt that ``prunevo apply`` wrote (read weights-only, not unpickled)."""
    if not is_model_file(name) or not Path(name).is_file() or _is_export_archive(Path(name)):
        return False
    try:
        data = torch.load(name, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  a pickled module or a foreign file: not a pruned-weights file
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith(PRUNED_WEIGHTS_FORMAT)


def is_model_file(name: str) -> bool:
    """Whether ``--model`` names a whole-model file (which holds its own weights) rather than an architecture."""
    return not is_timm(name) and (name.endswith((".pt", ".pth", ".pt2")) or Path(name).is_file())


def weights_dtype(tensors: Iterable[torch.Tensor]) -> torch.dtype | None:
    """The floating type most of ``tensors``' elements are stored in (None without floating tensors)."""
    counts: Counter[torch.dtype] = Counter()
    for t in tensors:
        if t.is_floating_point():
            counts[t.dtype] += t.numel()
    return counts.most_common(1)[0][0] if counts else None


def source_dtype(model: nn.Module) -> torch.dtype:
    """The floating type the user's weights came in (float32 unless ``in_float32`` converted them)."""
    return getattr(model, SOURCE_DTYPE_ATTR, torch.float32)


def in_float32(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """``model`` computing in float32 (the data's type, and what BatchNorm statistics and tracing need), with
    the type its weights came in (``dtype``, else their own) recorded for ``source_dtype``."""
    dtype = dtype or weights_dtype([*model.parameters(), *model.buffers()]) or torch.float32
    model.float()
    if dtype == torch.float32:
        model.__dict__.pop(SOURCE_DTYPE_ATTR, None)  # float32 weights loaded over another type's
    else:
        setattr(model, SOURCE_DTYPE_ATTR, dtype)
    return model


def check_classifier(model: nn.Module, input_shape: tuple[int, int, int], name: str = "the model") -> None:
    """Raises ModelError, in one line, when ``model`` does not return logits ``[N, classes]`` for ``input_shape``
    (C, H, W) images: a segmentation or detection model.  A model that fails on such images passes: the steps
    after it say why."""
    try:
        output = probe(model, torch.zeros(1, *input_shape), {}, lambda *_: None)
        logits = logits_of(output)
    except Exception:  # noqa: BLE001  tracing and evaluation report a model that cannot run, in their own words
        return
    if logits.dim() == 2:
        return
    shape = "[" + ", ".join(["N", *map(str, logits.shape[1:])]) + "]"
    if logits.dim() == 4 and logits.shape[2] * logits.shape[3] > 1:
        kind = f"a per-pixel map of shape {shape} (a segmentation/dense-prediction model)"
    else:
        kind = f"an output of shape {shape}"
    raise ModelError(f"{name} returns {kind}; only classifiers (logits [N, classes]) are supported")


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int], stem: str = "auto",
                module_file: str | None = None) -> nn.Module:
    """A model for ``num_classes`` classes and inputs of ``input_shape`` (C, H, W), randomly initialized.

    ``module_file``: for a ``module:function`` name, the file to load when ``module`` does not import from
    here (saved pruned models record it).  A user's model computes in float32 (``in_float32``).  Raises
    ModelError for an unknown name, a model that fails to build, or one that is not a classifier."""
    if stem not in STEMS:
        raise ModelError(f"unknown stem {stem!r}; allowed: {', '.join(STEMS)}")
    if name in SMALL_NET_NAMES:
        c, h, _ = input_shape
        return build_small_net(SMALL_NET_NAMES[name], c, num_classes, h)
    if is_timm(name):
        return _timm_model(name, num_classes, input_shape[0])
    if is_model_file(name):
        if not Path(name).is_file():
            raise ModelError(f"model file {name} does not exist")
        model = in_float32(_whole_model_file(Path(name)))
    elif ":" in name:
        model = in_float32(_user_function(name, num_classes, module_file))
    elif name in torchvision_names():
        small = stem == "cifar" or (stem == "auto" and input_shape[1] <= SMALL_INPUT_MAX)
        return _torchvision_model(name, num_classes, small)
    else:
        raise ModelError(f"unknown {{param:model}} {name!r}; allowed: a torchvision classification model "
                         f"(e.g. resnet18, vgg16_bn, mobilenet_v2, densenet121, efficientnet_b0), "
                         f"{', '.join(SMALL_NET_NAMES)}, timm:NAME, module:function, or a whole-model .pt file")
    # a user's model may read another channel count than the data has: probe with the one it reads
    channels = input_channels(model, input_shape[1]) if _has_conv(model) else input_shape[0]
    check_classifier(model, (channels, *input_shape[1:]), name)
    return model


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def input_channels(model: nn.Module, size: int | None = None) -> int:
    """The number of channels the layer that reads the image takes: the first convolution the input reaches
    when the model runs on ``size``-px images, so a convolution registered before the stem (in a
    squeeze-excitation block, say) is not taken for it; by registration order without a size or when no
    probe runs.  Raises ModelError for a model without convolutions."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ModelError("the model has no Conv2d layer: there are no channels to prune")
    if size is None:
        return convs[0].in_channels
    for channels in dict.fromkeys((convs[0].in_channels, 3, 1)):  # the registration guess first, then images
        first = _first_conv_run(model, torch.zeros(1, channels, size, size))
        if first is not None and first.in_channels == channels:
            return channels
    return convs[0].in_channels


def _first_conv_run(model: nn.Module, x: torch.Tensor) -> nn.Conv2d | None:
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    seen: list[str] = []  # a convolution's hook fires when it ends: for leaf layers, in the order they run
    try:
        probe(model, x, convs, lambda name, _i, _o: seen.append(name))
    except Exception:  # noqa: BLE001  a wrong channel count fails in the model's own way
        return None
    return convs[seen[0]] if seen else None


def needs_channels(name: str) -> int | None:
    """Channels a named torchvision model reads (3), or None when the model adapts to the data (small nets,
    timm models: ``in_chans``)."""
    return None if name in SMALL_NET_NAMES or is_timm(name) else 3
