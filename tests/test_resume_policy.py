"""One resume policy (runs.config.resume_differences), used by the library and the command line alike."""
import pytest

from prunevo.errors import RunError
from prunevo.evolve.run import _resumable
from prunevo.fitness.execution import Execution
from prunevo.runs.config import RESUMABLE, EvolutionConfig, resume_differences


def test_changes_and_conflicts_by_path():
    saved = EvolutionConfig(generations=4, execution=Execution(n_jobs=1))
    asked = EvolutionConfig(generations=9, execution=Execution(n_jobs=2), population=12, seed=3)
    diff = resume_differences(saved, asked)
    assert diff.changes == {"execution.n_jobs": (1, 2), "generations": (4, 9)}
    assert set(diff.conflicts) == {"population", "seed"} and not set(diff.conflicts) & set(RESUMABLE)
    only_typed = resume_differences(saved, asked, {"generations", "seed", "--not-a-path"})
    assert only_typed.changes == {"generations": (4, 9)} and only_typed.conflicts == {"seed": (0, 3)}


def test_the_library_refuses_conflicts_and_keeps_changes():
    saved = EvolutionConfig(generations=4)
    assert _resumable(saved, EvolutionConfig(generations=6)).generations == 6
    with pytest.raises(RunError, match=r"differs: seed 5 \(the run has 0\)"):
        _resumable(saved, EvolutionConfig(generations=6, seed=5))

