"""Small shared helpers: atomic file writes, the cache directory, stable hashing, seeding, thread counts."""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn


def default_cache_dir() -> Path:
    """``$PRUNEVO_CACHE`` or ``~/.cache/prunevo``: base networks and extracted datasets live here."""
    return Path(os.environ.get("PRUNEVO_CACHE", Path.home() / ".cache" / "prunevo"))


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def stable_hash(data: Any, length: int = 16) -> str:
    """A hash of JSON-able data that is the same in every process and Python version."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def state_hash(state: dict[str, torch.Tensor], length: int = 16) -> str:
    """A hash of named tensors (a model's weights, a dataset's images and labels): names, dtypes, shapes and
    bytes, the same in every process."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())  # no copy: a dataset's images may be large
    return h.hexdigest()[:length]


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def file_digest(path: str | os.PathLike, length: int = 16) -> str | None:
    """A hash of a file's bytes (None when it does not exist): what a checkpoint *is*, wherever it lies.  Files are
    read once per (path, size, modification time), so asking again is free."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return _file_digest(os.fspath(Path(path).resolve()), info.st_size, info.st_mtime_ns, length)


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any JSON-able parts (a run seed, a task name, a generation...)."""
    return int(stable_hash(list(parts), 8), 16) & 0x7FFFFFFF


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Render a matplotlib figure to ``path`` atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")  # legends placed outside the axes stay in
    atomic_write_bytes(path, buffer.getvalue())


def load_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True):
    """``model.load_state_dict(state)`` for a state dict that lost its ``_metadata`` (a plain dict copy, a
    weights-only file): the model's own module versions stand in, since ``state`` was made for this
    architecture (torchvision's MNASNet refuses a state dict without them)."""
    if getattr(state, "_metadata", None) is None:
        state = collections.OrderedDict(state)
        state._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
    return model.load_state_dict(state, strict=strict)


def probe(model: nn.Module, example_input: torch.Tensor, modules: dict[str, nn.Module],
          record: Callable[[str, tuple, object], None]):
    """Call ``record(name, inputs, output)`` for every module of ``modules`` during one eval-mode forward pass of
    the first example (no gradients, training mode restored); returns what the model returned."""
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: record(n, i, o)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore: results must not depend on the worker layout."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
