"""Progress of long steps: a tqdm bar on a terminal, a plain line at most every 30 s in a log, nothing when off."""
import io

import pytest
import torch
from torch import nn
from tqdm.std import tqdm

from prunevo import progress as progress_module
from prunevo.progress import PLAIN_EVERY_S, PlainProgress, duration, progress_bar, track
from prunevo.training import FitConfig, fit
from prunevo.training.batches import TensorImages


class Clock:
    """A monotonic clock the test moves by hand, in seconds."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_log_gets_a_line_at_most_every_30_s_with_counts_elapsed_and_remaining():
    assert PLAIN_EVERY_S == 30.0
    clock, log = Clock(), io.StringIO()
    bar = progress_bar(300, "pretrain resnet20", "step", True, stream=log, clock=clock)
    assert isinstance(bar, PlainProgress)
    written_at = []
    for _ in range(100):  # one step a second
        clock.now += 1
        before = len(lines(log))
        bar.update(1)
        if len(lines(log)) > before:
            written_at.append(clock.now)
    assert written_at == [1030.0, 1060.0, 1090.0]
    assert lines(log) == ["prunevo: pretrain resnet20: 30/300 steps (10%), elapsed 30s, remaining ~4m30s",
                          "prunevo: pretrain resnet20: 60/300 steps (20%), elapsed 1m00s, remaining ~4m00s",
                          "prunevo: pretrain resnet20: 90/300 steps (30%), elapsed 1m30s, remaining ~3m30s"]
    clock.now += 200
    bar.update(200)
    bar.close()
    bar.close()  # a second close (evolve closes in a finally too) writes nothing
    assert lines(log)[3:] == ["prunevo: pretrain resnet20: done, 300/300 steps in 5m00s"]  # the last step: one line


def test_fast_steps_write_only_the_final_line_and_a_step_cut_short_says_so():
    clock, log = Clock(), io.StringIO()
    with progress_bar(10_000, "fine-tune", "step", True, stream=log, clock=clock) as bar:
        for _ in range(2900):
            clock.now += 0.01
            bar.update(1)
    assert lines(log) == ["prunevo: fine-tune: stopped, 2900/10000 steps in 29s"]


def test_a_resumed_run_estimates_from_its_own_rate_and_shows_the_postfix():
    clock, log = Clock(), io.StringIO()
    bar = progress_bar(51, "evolve", "gen", True, initial=20, stream=log, clock=clock)
    clock.now += 3600
    bar.set_postfix(best="0.9712", new=14)
    bar.update(1)  # one generation in an hour: 30 more to go
    assert lines(log) == ["prunevo: evolve: 21/51 gens (41%), elapsed 1h00m, remaining ~30h00m; best=0.9712, new=14"]


def test_track_yields_every_item_and_ends_with_one_line():
    clock, log = Clock(), io.StringIO()
    seen = []
    for item in track(["a", "b", "c"], "re-score", "seed", True, stream=log, clock=clock):
        clock.now += 40
        seen.append(item)
    assert seen == ["a", "b", "c"]
    assert lines(log) == ["prunevo: re-score: 1/3 seeds (33%), elapsed 40s, remaining ~1m20s",
                          "prunevo: re-score: 2/3 seeds (67%), elapsed 1m20s, remaining ~40s",
                          "prunevo: re-score: done, 3/3 seeds in 2m00s"]


@pytest.mark.parametrize("stream_type", [io.StringIO, Terminal])
def test_progress_off_prints_nothing_in_a_log_or_on_a_terminal(stream_type):
    clock, stream = Clock(), stream_type()
    bar = progress_bar(5, "evolve", "gen", False, stream=stream, clock=clock)
    clock.now += 100
    bar.set_postfix(best=1)
    bar.update(5)
    bar.close()
    assert list(track(range(3), "re-score", "seed", False, stream=stream)) == [0, 1, 2]
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    screen = Terminal()
    bar = progress_bar(4, "evolve", "gen", True, stream=screen)
    assert isinstance(bar, tqdm) and not bar.disable
    bar.update(4)
    bar.close()
    assert "evolve" in screen.getvalue() and "4/4" in screen.getvalue() and "prunevo:" not in screen.getvalue()
    assert isinstance(track([1, 2], "random search", "candidate", True, stream=Terminal(), leave=False), tqdm)


def test_durations():
    assert [duration(s) for s in (-1, 0, 42.4, 59.6, 250, 3599, 3600, 3750, 90_000)] == \
        ["0s", "0s", "42s", "1m00s", "4m10s", "59m59s", "1h00m", "1h02m", "25h00m"]


def _tiny_data() -> TensorImages:
    gen = torch.Generator().manual_seed(0)
    return TensorImages(torch.randn(64, 4, generator=gen), torch.randint(0, 2, (64,), generator=gen))


@pytest.mark.parametrize("progress", [True, None])
def test_training_logged_to_a_file_prints_plain_lines(progress, capsys, monkeypatch):
    """The measured case: a base net trained with stderr not a terminal printed nothing for 25 minutes."""
    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)  # a line every step, not every 30 s
    fit(nn.Linear(4, 2), _tiny_data(), FitConfig(epochs=2, batch_size=16), 0, progress=progress,
        desc="pretrain tiny")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("prunevo: pretrain tiny: 1/8 steps (12%), elapsed ")
    assert err[-1].startswith("prunevo: pretrain tiny: done, 8/8 steps in ")
    assert len(err) == 8  # steps 1 to 7, then the final line


def test_training_without_progress_prints_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    fit(nn.Linear(4, 2), _tiny_data(), FitConfig(epochs=2, batch_size=16), 0, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("progress", [True, False])
def test_a_streamed_calibration_shows_its_chunks_in_a_log(progress, capsys):
    from prunevo.primitives.formula import Formula
    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.groups import find_groups
    from prunevo.zoo.models import build_model

    model = build_model("small-vgg", 10, (1, 8, 8)).eval()
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10, batch_size=4, progress=progress)
    calibration.stats_for_formula(Formula.parse("mean(abs(F))"))
    err = capsys.readouterr().err
    assert ("prunevo: calibrate: done, 3/3 batches" in err) == progress, err
