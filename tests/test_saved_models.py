"""Every kind of base model that --model accepts gives pruned files that load from another working directory,
and computes the same there; a user's module:function imports from the working directory like `python -m`."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(24, num_classes)

        def forward(self, x):
            return self.head(self.body(x))


    def build(num_classes=10):
        return Net(num_classes)
''')

# run in another working directory, with nothing of the user's on the path: prints what each file computes
LOADER = textwrap.dedent('''
    import json, sys
    import torch
    from prunevo.transfer import load_pruned

    results = []
    for out, pickled in json.loads(sys.argv[1]):
        shape = torch.load(f"{out}/pruned_weights.pt", weights_only=True)["input_shape"]  # torchvision's: 3 channels
        x = torch.linspace(-1, 1, 2 * 64 * shape[0]).reshape(2, *shape)
        with torch.no_grad():
            y = {"pt2": torch.export.load(f"{out}/pruned_model.pt2").module()(x).tolist(),
                 "weights": load_pruned(f"{out}/pruned_weights.pt")(x).tolist()}
            if pickled:
                y["pt"] = torch.load(f"{out}/pruned_model.pt", weights_only=False).eval()(x).tolist()
        results.append(y)
    print(json.dumps(results))
''')


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    prunevo = Path(sys.executable).with_name("prunevo")  # the console script: no working directory on its path
    return subprocess.run([str(prunevo), *args], cwd=cwd, capture_output=True, text=True)


def _user_files(tmp_path: Path) -> Path:
    home = tmp_path / "project"
    home.mkdir()
    (home / "mymodels.py").write_text(USER_MODULE)
    return home


@pytest.mark.slow
def test_every_kind_of_model_reloads_from_another_directory_and_computes_the_same(tmp_path):
    home = _user_files(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a whole-model file, given by a relative path
    subprocess.run([sys.executable, "-c", "import torch, mymodels; torch.save(mymodels.build(), 'whole.pt')"],
                   cwd=home, check=True)
    kinds = {  # --model value: whether pruned_model.pt (a pickle of the module) loads without the user's code
        "small-vgg": True, "resnet18": True, "mymodels:build": False, "mymodels.py:build": False, "whole.pt": False}
    for i, model in enumerate(kinds):
        r = _cli(home, "apply", "--formula", "l1", "--model", model, "--dataset", "digits", "--target-macs", "0.5",
                 "--epochs", "0", "--no-latency", "--no-progress", "--calibration-samples", "40", "-o", f"out{i}")
        assert r.returncode == 0, (model, r.stderr[-2000:])
    todo = [(str(home / f"out{i}"), pickled) for i, pickled in enumerate(kinds.values())]
    r = subprocess.run([sys.executable, "-c", LOADER, json.dumps(todo)], cwd=elsewhere, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for model, outputs in zip(kinds, json.loads(r.stdout)):
        first = torch.tensor(outputs["pt2"])
        assert first.shape == (2, 10)
        assert all(torch.allclose(torch.tensor(v), first, atol=1e-5) for v in outputs.values()), model
    saved = torch.load(home / "out2" / "pruned_weights.pt", weights_only=True)
    assert saved["model"] == "mymodels:build" and saved["module_file"] == str(home / "mymodels.py")
    assert torch.load(home / "out3" / "pruned_weights.pt", weights_only=True)["model"] == f"{home}/mymodels.py:build"
    assert torch.load(home / "out4" / "pruned_weights.pt", weights_only=True)["model"] == str(home / "whole.pt")


@pytest.mark.slow
def test_a_user_module_that_does_not_import_says_where_it_looked(tmp_path):
    r = _cli(tmp_path, "apply", "--formula", "l1", "--model", "nosuchmodule:build", "--dataset", "digits",
             "--epochs", "0", "--no-latency")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"from the working directory {tmp_path}" in r.stderr and "path/to/module.py:build" in r.stderr
    (tmp_path / "broken.py").write_text("import nosuchdependency\n\ndef build():\n    pass\n")
    r = _cli(tmp_path, "apply", "--formula", "l1", "--model", "broken:build", "--dataset", "digits", "--epochs", "0",
             "--no-latency")
    assert r.returncode == 2 and "No module named 'nosuchdependency'" in r.stderr  # the user's import, named
