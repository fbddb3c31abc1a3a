"""Channel rounding (``--round-to``): pruned groups keep multiples of N channels, MACs targets still met."""
import pytest
import torch

from prunevo.training import Accelerator
from prunevo.transfer.setup import Setup
from prunevo.errors import PrunevoError
from prunevo.pruning.criteria import as_criterion
from prunevo.pruning.ranking import round_kept
from prunevo.transfer.report import target_text
from prunevo.transfer.config import TransferConfig
from tests.helpers import session_for


def test_round_kept_follows_torch_prunings_round_to():
    scores = [torch.arange(20.0), torch.arange(16.0), torch.arange(4.0)]
    keep = [scores[0] >= 7, torch.ones(16, dtype=torch.bool), scores[2] >= 3]  # keeps 13, all 16, 1
    rounded = round_kept(keep, scores, 4)
    assert [int(k.sum()) for k in rounded] == [12, 16, 4]  # 13 -> 12; a whole group stays; never below 4
    assert torch.equal(rounded[0], scores[0] >= 8)  # the lowest-scoring kept channel is the one that goes
    assert torch.equal(rounded[2], torch.ones(4, dtype=torch.bool))
    assert round_kept(keep, scores, 1) is keep


@pytest.fixture(scope="module", params=["uniform", "global"])
def rounded_session(request):
    """A resnet18 session that rounds to multiples of 8, under each allocation (built once per allocation)."""
    return session_for("resnet18", round_to=8, allocation=request.param)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["l1", "taylor"])
def test_every_pruned_width_is_a_multiple_and_the_macs_target_holds(rounded_session, name):
    session = rounded_session
    chosen = session.select(as_criterion(name), 0)
    assert abs(chosen.macs_fraction - 0.5) <= 0.03 * 0.5, chosen.macs_fraction
    widths = [int(k.sum()) for k, g in zip(chosen.keep, session.groups) if int(k.sum()) < g.size]
    assert widths and all(w % 8 == 0 for w in widths), widths
    pruned = session.prune(chosen.keep, session.calibration(0).x[:4], chosen.pruned)  # masked == pruned
    convs = [m.out_channels for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c % 8 == 0 for c in convs), convs


def test_default_rounding_depends_on_the_device_and_reports_say_it():
    cpu = TransferConfig(setup=Setup(model="resnet18", dataset="fakedata"), accelerator=Accelerator("cpu"))
    assert cpu.rounding == 1 and cpu.to_dict()["round_to"] == 1
    assert TransferConfig(setup=Setup(model="resnet18", dataset="fakedata"),
                          accelerator=Accelerator("cuda")).rounding == 8
    assert "multiples of 8" in target_text(TransferConfig(setup=Setup(model="resnet18", dataset="fakedata"),
                                                          round_to=8).to_dict())
    assert "multiples" not in target_text(cpu.to_dict())
    with pytest.raises(PrunevoError, match="round_to"):
        TransferConfig(setup=Setup(model="resnet18", dataset="fakedata"), round_to=0)
