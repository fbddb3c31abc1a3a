"""Fitness tasks from MODEL@DATASET[:key=value,...]: parsing, precedence, and tasks on transfer datasets."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from prunevo.errors import PrunevoError
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.task_spec import TaskOverrides, build_tasks, parse_task
from prunevo.fitness.tasks import prepare_task
from prunevo.pruning.allocation import SearchSpec
from prunevo.pruning.cost import MacsEstimator
from prunevo.pruning.criteria import as_criterion
from prunevo.zoo.models import build_model
from tests.helpers import write_image_folder

QUICK = "pretrain=2,epochs=0.25,batch=64"


def test_the_issue_examples_parse_into_task_fields():
    task = parse_task("resnet20@fashion-mnist:macs=0.5,epochs=1,train=4000,val=2000,weight=2")
    assert (task.model, task.dataset, task.target_macs, task.weight) == ("resnet20", "fashion-mnist", 0.5, 2.0)
    assert (task.finetune.epochs, task.finetune.max_samples, task.val_samples) == (1.0, 4000, 2000)
    folder = parse_task("small-vgg@imagefolder:../shared/data/imagenette2:size=32,allocation=global,seeds=3")
    assert folder.dataset == "imagefolder:../shared/data/imagenette2" and folder.image_size == 32
    assert folder.prune.ranking == "global" and folder.allocation == "global" and folder.seeds == 3
    assert parse_task("lenet5@mnist").target_macs is None and parse_task("lenet5@mnist").prune.ratio == 0.75
    assert parse_task("small-vgg@digits:allocation=random-search,macs=0.4").search == SearchSpec()
    assert parse_task("resnet18@imagefolder:/data").image_size == 32  # colour datasets default to 32 px


def test_aliases_name_the_same_task_and_options_beat_run_wide_overrides():
    assert parse_task("digits-vgg").identity() == parse_task("small-vgg@digits").identity()
    assert parse_task("mnist-lenet5").identity() == parse_task("lenet5@mnist").identity()
    assert parse_task("digits-vgg").identity() != parse_task("small-vgg@digits:ratio=0.5").identity()
    run_wide = TaskOverrides(prune_ratio=0.6, allocation="global")
    assert parse_task("small-vgg@digits", run_wide).prune.ratio == 0.6
    own = parse_task("small-vgg@digits:ratio=0.3,allocation=uniform", run_wide)
    assert own.prune.ratio == 0.3 and own.allocation == "uniform"
    tasks = build_tasks(["small-vgg@digits:weight=3", "lenet5@digits"], weights=(1.0, 2.0))
    assert [t.weight for t in tasks] == [1.0, 2.0]
    assert [t.weight for t in build_tasks(["small-vgg@digits:weight=3"])] == [3.0]


def test_runs_saved_before_the_ranking_rename_load_and_keep_their_cache_keys(tmp_path):
    """PruneSpec.ranking and TaskOverrides.ranking were called ``selection``: an old run's config.json still
    loads, and task identities (the fitness cache's keys) hash the field under its old name."""
    import json
    from dataclasses import asdict

    from prunevo.runs.config import EvolutionConfig
    from prunevo.runs.hall_of_fame import Entry
    from prunevo.runs.result import saved_config
    from prunevo.utils import stable_hash

    old = EvolutionConfig(tasks=("digits-lenet5",)).to_json()
    old["overrides"] = {"prune_ratio": 0.6, "selection": "global", "group_reduction": None,
                        "finetune_epochs": None, "allocation": None}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = saved_config(tmp_path)
    assert config.overrides == TaskOverrides(prune_ratio=0.6, ranking="global")
    (task,) = config.task_list()
    assert task.prune.ranking == "global" and task.allocation == "global"
    assert "selection" not in config.to_json()["overrides"] and config.to_json()["overrides"]["ranking"] == "global"
    fields = asdict(task)
    fields["prune"]["selection"] = fields["prune"].pop("ranking")
    del fields["name"], fields["weight"], fields["recal_batches"], fields["holdout_samples"]
    del fields["checkpoint"], fields["stem"], fields["classes"]  # fields added later, left out while unset
    del fields["reconstruct"], fields["reconstruction"]
    assert task.identity() == stable_hash(fields)  # the hash written before the rename
    # hall-of-fame entries keep "selection": the masks a formula selects (the word's one meaning)
    entry = {"text": "l1(W)", "fitness": 0.9, "complexity": 2, "generation": 0, "selection": "ab12"}
    assert Entry(**entry).selection == "ab12"


@pytest.mark.parametrize("spec,fragment", [
    ("small-vgg@digits:depth=3", "unknown; allowed: macs, ratio"),
    ("small-vgg@digits:macs=0.5,ratio=0.2", "both macs and ratio"),
    ("small-vgg@digits:macs=1.5", "out of range"),
    ("small-vgg@digits:epochs=many", "not a number"),
    ("small-vgg@digits:seeds=1.5", "not an integer"),
    ("small-vgg@digits:epochs=1,epochs=2", "given twice"),
    ("small-vgg@digits:allocation=best", "allowed: uniform, global, random-search"),
    ("@digits", "needs a model and a dataset"),
    ("cifar-vgg", "is not MODEL@DATASET"),
])
def test_bad_task_specs_say_what_is_allowed(spec, fragment):
    with pytest.raises(PrunevoError, match=fragment):
        parse_task(spec)


@pytest.mark.slow
@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_a_macs_target_is_met_on_the_estimate_under_both_allocations(cache_dir, allocation):
    prepared = prepare_task(parse_task(f"small-vgg@digits:macs=0.5,allocation={allocation},{QUICK}"),
                            cache_dir=cache_dir)
    plan = Evaluator([prepared]).mask_plan(as_criterion("l1"))
    estimator = MacsEstimator(build_model("small-vgg", 10, prepared.data.input_shape), prepared.groups,
                              prepared.example_input)
    keep = plan.keeps[prepared.task.name][0]
    assert 0.45 <= estimator.fraction(keep) <= 0.5
    widths = [int(k.sum()) / len(k) for k in keep]
    assert (max(widths) - min(widths) < 0.05) == (allocation == "uniform")


@pytest.mark.slow
def test_several_finetune_seeds_are_separate_jobs_and_fitness_reads_their_mean(cache_dir):
    prepared = prepare_task(parse_task(f"small-vgg@digits:seeds=2,{QUICK}"), cache_dir=cache_dir)
    evaluator = Evaluator([prepared])
    result = evaluator.evaluate([as_criterion("l1")])[0]
    assert evaluator.stats.jobs == 2 and len(evaluator.cache) == 2
    accs = list(evaluator.cache.values())
    assert result.accuracy[prepared.task.name] == pytest.approx(sum(accs) / 2)
    single = Evaluator([replace(prepared, task=replace(prepared.task, seeds=1))])
    assert single.finetune_seed(single.tasks[0]) != evaluator.finetune_seed(prepared)  # another task identity


@pytest.mark.slow
def test_a_task_on_an_image_folder_renders_once_and_scores(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "imgs", per_class=10, size=24, splits=("train", "val"))
    spec = f"small-vgg@imagefolder:{root}:size=16,val=12,{QUICK}"
    prepared = prepare_task(parse_task(spec), cache_dir=tmp_path / "cache")
    assert prepared.data.input_shape == (3, 16, 16) and prepared.data.num_classes == 3
    # no test/ folder: half of val/ is held out for re-scoring, the other half serves fitness
    assert len(prepared.data.train) == 30 and len(prepared.data.val) == 12 and len(prepared.data.holdout) == 15
    rendered = sorted((tmp_path / "cache" / "data").glob("rendered-*.pt"))
    assert len(rendered) == 3  # the training images, the fitness ones and the held-out ones: only what it reads
    again = prepare_task(parse_task(spec), cache_dir=tmp_path / "cache")  # read back from the rendering
    assert torch.equal(again.data.train.x, prepared.data.train.x) and again.identity == prepared.identity
    assert sorted((tmp_path / "cache" / "data").glob("rendered-*.pt")) == rendered
    result = Evaluator([prepared]).evaluate([as_criterion("l1")])[0]
    assert result.valid and 0 < result.fitness
    # val= is at most: a split with fewer images serves whole, and the task's data roles say how many
    whole = prepare_task(parse_task(f"small-vgg@imagefolder:{root}:size=16,val=100,{QUICK}"),
                         cache_dir=tmp_path / "cache")
    assert len(whole.data.val) == 15 and whole.data.roles["fitness"].startswith("15 of 15 images of half of")


@pytest.mark.slow
def test_a_torchvision_model_serves_as_a_fitness_task(cache_dir):
    prepared = prepare_task(parse_task("resnet18@fakedata:size=16,ratio=0.5,pretrain=1,epochs=0.1,batch=32"),
                            cache_dir=cache_dir)
    result = Evaluator([prepared]).evaluate([as_criterion("bn")])[0]
    assert result.valid and result.accuracy[prepared.task.name] >= 0
