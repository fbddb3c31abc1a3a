"""Gathered weights equal physical pruning: a skeleton per signature, any candidate's weights by indexing."""
import pytest
import torch

from prunevo.pruning.gather import Skeleton, SkeletonCache, signature
from prunevo.pruning.groups import find_groups
from prunevo.pruning.physical import prune_model
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.zoo.models import build_model

SLOW = pytest.mark.slow  # the torchvision nets
NETS = [("small-vgg", (1, 8, 8)), ("small-resnet", (1, 8, 8)), ("lenet5", (1, 28, 28)), ("resnet20", (3, 32, 32)),
        pytest.param("resnet18", (3, 32, 32), marks=SLOW), pytest.param("mobilenet_v2", (3, 32, 32), marks=SLOW),
        pytest.param("densenet121", (3, 32, 32), marks=SLOW)]


def _keep(groups, seed, ratio=0.5):
    gen = torch.Generator().manual_seed(seed)
    return select([torch.rand(g.size, generator=gen) for g in groups], PruneSpec(ratio=ratio))


@pytest.mark.parametrize("name,shape", NETS)
def test_gathered_state_equals_physical_pruning(name, shape):
    torch.manual_seed(0)
    factory = lambda: build_model(name, 10, shape)  # noqa: E731
    model = factory().eval()
    for m in model.modules():  # non-trivial BN statistics, so that a wrong index shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, *shape)
    groups = find_groups(model, x)
    skeleton = Skeleton.build(factory, base, groups, _keep(groups, 0), x)
    for seed in (1, 2):  # other candidates of the same signature: gathered == physically pruned
        keep = _keep(groups, seed)
        assert signature(keep) == skeleton.signature
        pruned = factory()
        pruned.load_state_dict(base)
        prune_model(pruned, groups, keep, x)
        expected = pruned.state_dict()
        gathered = skeleton.state_for(keep, base)
        assert expected.keys() == gathered.keys()
        for key in expected:
            assert torch.equal(expected[key], gathered[key]), key
        skeleton.model.load_state_dict(gathered)
        with torch.no_grad():
            assert torch.equal(skeleton.model.eval()(x), pruned.eval()(x))


def test_signature_mismatch_and_cache():
    factory = lambda: build_model("small-vgg", 10, (1, 8, 8))  # noqa: E731
    model = factory()
    base = model.state_dict()
    x = torch.randn(2, 1, 8, 8)
    groups = find_groups(model, x)
    cache = SkeletonCache(factory, base, groups, x)
    half, quarter = _keep(groups, 0, 0.5), _keep(groups, 0, 0.75)
    assert cache.get(half) is cache.get(_keep(groups, 3, 0.5))
    assert cache.get(quarter).signature != cache.get(half).signature
    with pytest.raises(ValueError, match="signature"):
        cache.get(half).state_for(quarter, base)
