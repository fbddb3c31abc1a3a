"""A search on the user's own network: fitness tasks from the user's weights (every form apply reads), which
images each step reads (never an image in both fitness and the verdict, never a training image for weights
trained elsewhere), and the task evolve --model builds."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
from torch import nn

from prunevo.errors import DataError, ModelError, PrunevoError
from prunevo.fitness.data import load_task_data
from prunevo.fitness.task_spec import (DISCOVERY_OPTIONS, LARGE_INPUT_PROXY, LARGE_INPUT_PX, input_size, parse_task,
                                       proxy_note, task_for)
from prunevo.fitness.tasks import prepare_task
from prunevo.utils import load_state
from prunevo.zoo.checkpoints import save_checkpoint
from prunevo.zoo.models import build_model
from tests.helpers import randomize_batchnorm, write_image_folder

SHAPE = (1, 8, 8)  # the embedded digits
ONE_SHOT = "epochs=0,recal=1"


def _net(seed: int = 0, shape: tuple = SHAPE, classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model("small-vgg", classes, shape), seed).eval()


def _same_outputs(model: nn.Module, state: dict) -> bool:
    copy = build_model("small-vgg", 10, SHAPE)
    load_state(copy, state)
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(copy.eval()(x), model(x))


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to train a base net fails the test."""
    import prunevo.fitness.pretrain as pretrain

    def refuse(*args, **kwargs):
        raise AssertionError("a task from the user's weights trained a base net")
    monkeypatch.setattr(pretrain, "fit", refuse)


@pytest.mark.parametrize("form", ["prunevo", "bare", "dataparallel-nested"])
def test_a_task_from_a_checkpoint_trains_nothing_and_prunes_the_users_weights(tmp_path, no_training, form):
    model = _net()
    path = tmp_path / "mine.pt"
    if form == "prunevo":
        save_checkpoint(path, model, {"model": "small-vgg", "dataset": "digits", "num_classes": 10,
                                      "input_shape": list(SHAPE), "stem": None})
    elif form == "bare":
        torch.save(model.state_dict(), path)
    else:  # a torchvision reference script's checkpoint of a DataParallel model
        torch.save({"epoch": 3, "model": nn.DataParallel(model).state_dict()}, path)
    task = parse_task(f"small-vgg@digits:checkpoint={path},{ONE_SHOT}")
    assert task.user_weights and "from " in task.describe()
    prepared = prepare_task(task, cache_dir=tmp_path / "cache")
    assert _same_outputs(model, prepared.base_state)
    assert not (tmp_path / "cache" / "nets").exists()  # nothing trained, nothing cached
    assert prepared.task.roles(prepared.data)["base net"].startswith(str(path))


def test_a_checkpoint_counts_by_its_content_not_its_path(tmp_path):
    first, moved, other = tmp_path / "a.pt", tmp_path / "moved" / "a.pt", tmp_path / "b.pt"
    torch.save(_net(0).state_dict(), first)
    moved.parent.mkdir()
    shutil.copy(first, moved)
    torch.save(_net(1).state_dict(), other)
    ident = {p: parse_task(f"small-vgg@digits:checkpoint={p},{ONE_SHOT}").identity() for p in (first, moved, other)}
    assert ident[first] == ident[moved] != ident[other]
    # the recipe of a base net prunevo would train is no part of a checkpoint's task
    assert parse_task(f"small-vgg@digits:checkpoint={first},{ONE_SHOT}").identity() != parse_task(
        f"small-vgg@digits:{ONE_SHOT}").identity()
    with pytest.raises(PrunevoError, match="both checkpoint and pretrain"):
        parse_task(f"small-vgg@digits:checkpoint={first},pretrain=3")
    with pytest.raises(ModelError, match="does not exist"):
        prepare_task(parse_task(f"small-vgg@digits:checkpoint={tmp_path / 'none.pt'},{ONE_SHOT}"),
                     cache_dir=tmp_path / "cache")


MODULE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def tiny(num_classes=10):
    return Tiny(num_classes)
'''


def test_a_users_own_model_serves_from_a_function_file_and_a_whole_model_file(tmp_path, no_training):
    (tmp_path / "mynets.py").write_text(MODULE)
    spec_model = f"{tmp_path / 'mynets.py'}:tiny"
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(spec_model, 10, SHAPE)).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "tiny.pt")
    from_function = prepare_task(parse_task(f"{spec_model}@digits:checkpoint={tmp_path / 'tiny.pt'},{ONE_SHOT}"),
                                 cache_dir=tmp_path / "cache")
    torch.save(model, tmp_path / "whole.pt")  # torch.save(model): the weights travel with the module
    whole = parse_task(f"{tmp_path / 'whole.pt'}@digits:{ONE_SHOT}")
    assert whole.user_weights
    from_file = prepare_task(whole, cache_dir=tmp_path / "cache")
    for prepared in (from_function, from_file):
        assert all(torch.equal(prepared.base_state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(PrunevoError, match="whole-model file"):
        parse_task(f"{tmp_path / 'whole.pt'}@digits:pretrain=2")


def _rows(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images}


@pytest.mark.parametrize("layout,unseen,fitness_from", [
    ("digits", True, "the validation split"),
    (("train", "val"), True, "half of the validation split"),  # no test/: val/ is cut in two
    (("train",), True, "half of the validation split (carved"),  # val is a tenth of train/, never trained on
    (("train", "test"), True, "the validation split (carved"),
    (("train", "test"), False, "half of the test split"),  # weights from elsewhere may have trained on all of train/
])
def test_no_image_is_read_by_both_fitness_and_the_verdict(tmp_path, layout, unseen, fitness_from):
    if layout == "digits":
        dataset = "digits"
    else:
        dataset = f"imagefolder:{write_image_folder(tmp_path / 'imgs', per_class=20, size=12, splits=layout)}"
    data = load_task_data("small-vgg", dataset, None, None, cache_dir=tmp_path / "cache", unseen_val=unseen)
    fitness, held, train = _rows(data.val.x), _rows(data.holdout.x), _rows(data.train.x)
    assert len(fitness) == len(data.val) and len(held) == len(data.holdout)  # the images are all distinct
    assert not fitness & held
    assert not fitness & train and not held & train
    assert data.roles["fitness"].split(" images of ", 1)[1].startswith(fitness_from)
    # at most val= images, stratified: every class keeps its share
    fewer = load_task_data("small-vgg", dataset, None, 12, cache_dir=tmp_path / "cache", unseen_val=unseen)
    assert len(fewer.val) == min(12, len(data.val)) and _rows(fewer.val.x) <= fitness


def test_weights_from_elsewhere_never_score_on_images_they_may_have_trained_on(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=10, size=12, splits=("train", "test"))
    state = _net(shape=(3, 8, 8), classes=3).state_dict()
    torch.save(state, tmp_path / "foreign.pt")  # another tool's: trained on all of train/, for all we know
    foreign = prepare_task(parse_task(f"small-vgg@imagefolder:{root}:size=8,checkpoint={tmp_path / 'foreign.pt'},"
                                      f"{ONE_SHOT}"), cache_dir=tmp_path / "cache")
    assert "half of the test split" in foreign.data.roles["fitness"]
    save_checkpoint(tmp_path / "ours.pt", _net(shape=(3, 8, 8), classes=3), {"model": "small-vgg",
                                                                             "dataset": f"imagefolder:{root}",
                                                    "num_classes": 3, "input_shape": [3, 8, 8]})
    ours = prepare_task(parse_task(f"small-vgg@imagefolder:{root}:checkpoint={tmp_path / 'ours.pt'},{ONE_SHOT}"),
                        cache_dir=tmp_path / "cache")  # prunevo train held the validation tenth out
    assert "the validation split (carved" in ours.data.roles["fitness"]
    assert ours.data.input_shape == (3, 8, 8)  # the checkpoint's image size, not the folder's 12 px
    only_train = write_image_folder(tmp_path / "bare", per_class=10, size=12)
    with pytest.raises(DataError, match="no split that weights trained on all of its training files cannot have "
                                        "seen") as err:
        prepare_task(parse_task(f"small-vgg@imagefolder:{only_train}:size=8,checkpoint={tmp_path / 'foreign.pt'}"),
                     cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_task_for_builds_the_search_on_the_users_network(tmp_path):
    save_checkpoint(tmp_path / "mine.pt", _net(), {"model": "small-vgg", "dataset": "digits", "num_classes": 10,
                                                    "input_shape": list(SHAPE)})
    spec = task_for("small-vgg", checkpoint=tmp_path / "mine.pt", target_macs=0.25)  # the dataset: the checkpoint's
    task = parse_task(spec)
    assert task.dataset == "digits" and task.target_macs == 0.25 and task.checkpoint == str(tmp_path / "mine.pt")
    assert task.regime == "one-shot" and task.allocation == DISCOVERY_OPTIONS["allocation"]
    assert parse_task(task_for("small-vgg", "digits", channel_ratio=0.4, allocation="uniform")).prune.ratio == 0.4
    torch.save(_net().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(PrunevoError, match="dataset is needed"):
        task_for("small-vgg", checkpoint=tmp_path / "bare.pt")
    odd = tmp_path / "a,b.pt"
    shutil.copy(tmp_path / "bare.pt", odd)
    with pytest.raises(PrunevoError, match="a comma or a colon"):
        task_for("small-vgg", "digits", checkpoint=odd)
    with pytest.raises(PrunevoError, match="one of target_macs and channel_ratio"):
        task_for("small-vgg", "digits", target_macs=0.5, channel_ratio=0.5)


def test_every_reader_of_a_checkpoint_builds_the_stem_it_was_trained_with(tmp_path):
    """A torchvision network trained with the ImageNet stem at a size where 'auto' means the CIFAR stem ('prunevo
    train --stem imagenet --image-size 64'): apply, compare and the search's task all build the ImageNet stem
    and load the weights, without --stem."""
    from prunevo.fitness.tasks import resolve_checkpoint
    from prunevo.transfer.setup import Setup, load_setup

    shape = (3, 32, 32)
    torch.manual_seed(0)
    net = build_model("resnet18", 10, shape, "imagenet").eval()
    save_checkpoint(tmp_path / "in.pt", net, {"model": "resnet18", "dataset": "digits", "num_classes": 10,
                                              "input_shape": list(shape), "stem": "imagenet"})
    data, model, meta = load_setup(Setup(model="resnet18", checkpoint=str(tmp_path / "in.pt")))
    assert data.input_shape == shape and meta["stem"] == "imagenet"
    assert model.conv1.kernel_size == (7, 7) and torch.equal(model.conv1.weight, net.conv1.weight)
    task, _ = resolve_checkpoint(parse_task(f"resnet18@digits:checkpoint={tmp_path / 'in.pt'},{ONE_SHOT}"))
    assert task.stem == "imagenet" and task.image_size == shape[-1]


def test_large_inputs_search_on_the_proxy_and_say_so(tmp_path, capsys, monkeypatch):
    """At LARGE_INPUT_PX pixels or more (given, from the checkpoint, or probed from an image folder's files),
    the task evolve --model builds reads the fitness proxy, and says so; --no-proxy and smaller inputs read the
    whole task."""
    from prunevo.cli import main

    large, small = LARGE_INPUT_PX, LARGE_INPUT_PX - 1
    proxied = task_for("small-vgg", "digits", image_size=large)
    assert parse_task(proxied).val_samples == int(LARGE_INPUT_PROXY["val"]) and proxy_note(proxied)
    assert parse_task(proxied).image_size == large  # the proxy reads fewer images, not smaller ones
    for whole in (task_for("small-vgg", "digits", image_size=large, proxy=False),
                  task_for("small-vgg", "digits", image_size=small), task_for("small-vgg", "digits")):
        assert parse_task(whole).val_samples == int(DISCOVERY_OPTIONS["val"]) and proxy_note(whole) is None
    save_checkpoint(tmp_path / "big.pt", _net(), {"model": "small-vgg", "dataset": "digits", "num_classes": 10,
                                                   "input_shape": [1, large, large]})
    assert input_size("digits", checkpoint=tmp_path / "big.pt") == large
    assert proxy_note(task_for("small-vgg", checkpoint=tmp_path / "big.pt"))
    photos = write_image_folder(tmp_path / "photos", size=200, per_class=1)
    thumbnails = write_image_folder(tmp_path / "thumbnails", size=24, per_class=1)
    assert input_size(f"imagefolder:{photos}") == 224 and input_size(f"imagefolder:{thumbnails}") == 24
    assert input_size(f"imagefolder:{photos}", image_size=64) == 64
    assert main(["evolve", "--no-proxy", "--run-dir", str(tmp_path / "run")]) == 2
    assert "--no-proxy needs --model" in capsys.readouterr().err
    import importlib

    def stop(config, *args, **kwargs):  # the search itself is tested elsewhere: here, what evolve says first
        raise PrunevoError(f"stopped: {config.tasks[0]}")

    monkeypatch.setattr(importlib.import_module("prunevo.evolve.run"), "evolve", stop)
    command = ["evolve", "--model", "small-vgg", "--dataset", "digits", "--image-size", str(large), "--run-dir",
               str(tmp_path / "run")]
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert out.startswith("fitness proxy: ") and f"val={LARGE_INPUT_PROXY['val']}," in err
    assert main([*command, "--no-proxy"]) == 2
    out, err = capsys.readouterr()
    assert "fitness proxy" not in out and f"val={DISCOVERY_OPTIONS['val']}," in err


@pytest.mark.slow
def test_evolve_on_the_users_network_ends_with_the_verdict_and_apply_prunes_it_with_the_winner(tmp_path, capsys,
                                                                                                   monkeypatch):
    """The README's first command, small: prunevo train, evolve --model --checkpoint (one task built from the
    network, nothing trained, baselines under uniform and global allocation, the verdict against the best pair),
    show (which images each step read), then apply RUN_DIR (the winner, on the run's network and target)."""
    from prunevo.cli import main
    from prunevo.transfer.apply import load_pruned

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "small-vgg", "--dataset", "digits", "--epochs", "2", "-o", "base.pt",
                 "--no-progress"]) == 0
    run = ["--run-dir", "run", "--population", "6", "--generations", "1", "--rescore-seeds", "2", "--n-jobs", "1",
           "--no-progress"]
    assert main(["evolve", "--model", "small-vgg", "--checkpoint", "base.pt", "--target-macs", "0.4", *run]) == 0
    out = capsys.readouterr().out
    assert "    base net:                " + str(tmp_path / "base.pt") in out
    assert "fitness:" in out and "of the validation split" in out and "held-out:" in out and "of the test split" in out
    assert "tp-l2 (uniform)" in out and "tp-l2 (global)" in out
    verdict = out.split("verdict (one-shot")[1]
    assert "winner (global)" in verdict and "winner (uniform)" in verdict  # the winner under both allocations
    assert "evolution gain: winner vs the best seed" in verdict and "(3 draws)" in verdict  # raced by default
    assert main(["show", "run"]) == 0
    assert "held-out:" in capsys.readouterr().out
    assert main(["apply", "run", "-o", "pruned", "--no-latency", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "best of run" in report and "40% of the MACs" in report and "strategy global" in report
    assert load_pruned(tmp_path / "pruned" / "pruned_weights.pt") is not None
    assert main(["evolve", "--model", "small-vgg", "--tasks", "digits-vgg", *run]) == 2  # one or the other
    assert "not both" in capsys.readouterr().err
    # a resumed search keeps its network and target: another one is refused, naming the option
    assert main(["evolve", "--resume", "--model", "small-vgg", "--checkpoint", "base.pt", "--target-macs", "0.5",
                 *run]) == 2
    assert "--model (small-vgg@digits:" in capsys.readouterr().err


def test_a_task_that_trains_nothing_holds_a_pool_of_training_images_and_streams_large_feature_maps(tmp_path,
                                                                                                    monkeypatch):
    """ImageNet-size inputs: a user's network pruned one-shot reads a calibration batch and BatchNorm batches,
    so only a stratified pool of training images is decoded and held; a calibration whose feature maps would not
    fit in memory streams them in chunks, with the same scores."""
    import prunevo.fitness.tasks as tasks
    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.criteria import as_criterion

    torch.save(_net().state_dict(), tmp_path / "mine.pt")
    spec = f"small-vgg@digits:checkpoint={tmp_path / 'mine.pt'},{ONE_SHOT}"
    whole = prepare_task(parse_task(spec), cache_dir=tmp_path / "cache")
    assert whole.calibration.batch_size is None and "training images" not in whole.data.roles
    monkeypatch.setattr(tasks, "TRAIN_POOL", 300)
    monkeypatch.setattr(tasks, "FEATURE_MEMORY", 1000)
    lean = prepare_task(parse_task(spec), cache_dir=tmp_path / "cache")
    assert len(lean.data.train) == 300 < len(whole.data.train)
    assert lean.data.roles["training images"].startswith(f"300 of {len(whole.data.train):,}, stratified")
    assert torch.bincount(lean.data.train.targets).tolist() == [30] * 10
    assert lean.calibration.batch_size == tasks.STREAM_CHUNK
    for text in ("l2(F) * l1(Wn)", "abs(mean(F * G))"):  # streamed statistics equal whole-batch ones
        a = as_criterion(text).group_scores(lean.calibration, "mean")
        c = lean.calibration
        b = as_criterion(text).group_scores(Calibration(c.model, c.groups, c.x, c.y, c.num_classes), "mean")
        assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a, b))
    fine_tuned = prepare_task(parse_task(f"small-vgg@digits:checkpoint={tmp_path / 'mine.pt'},epochs=0.1"),
                              cache_dir=tmp_path / "cache")
    assert len(fine_tuned.data.train) == len(whole.data.train)  # a fine-tune reads every training image
