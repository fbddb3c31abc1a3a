"""The examples in the docstrings run (``make test`` runs every one), and every public object has them.

Every object of ``prunevo.__all__``, the ``Criterion`` protocol, ``HallOfFame`` and ``ChannelGroup`` gives its
arguments, results and errors (Args/Returns/Raises, or Attributes for a record) and a worked example.
"""
from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import pkgutil

import pytest

import prunevo
from prunevo.pruning.criteria import Criterion
from prunevo.pruning.groups import ChannelGroup
from prunevo.runs.hall_of_fame import HallOfFame

PUBLIC = {**{name: getattr(prunevo, name) for name in prunevo.__all__}, "Criterion": Criterion,
          "HallOfFame": HallOfFame, "ChannelGroup": ChannelGroup}


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for info in pkgutil.walk_packages(prunevo.__path__, "prunevo."):
        module = importlib.import_module(info.name)
        found += [t for t in finder.find(module, info.name) if t.examples]
    return sorted(found, key=lambda t: t.name)


DOCTESTS = _doctests()
# examples that train a base network on first use (cached per test process): one process runs them all, and the
# development loop (-m "not slow") leaves them out
TRAINS = ("evolve(", "score_formulas(", "train_base(")


def _param(test: doctest.DocTest):
    trains = any(word in example.source for example in test.examples for word in TRAINS)
    marks = [pytest.mark.slow, pytest.mark.xdist_group("doctests-train")] if trains else []
    return pytest.param(test, marks=marks, id=test.name)


def test_every_public_object_is_documented():
    missing = []
    for name, obj in PUBLIC.items():
        doc = inspect.getdoc(obj) or ""
        record = dataclasses.is_dataclass(obj) or inspect.isclass(obj) and issubclass(obj, Exception)
        sections = ["Attributes:" if dataclasses.is_dataclass(obj) else None] if record else ["Args:", "Returns:",
                                                                                            "Raises:"]
        if inspect.isclass(obj) and not record:  # a protocol or a class: its methods say what they take
            sections = []
        missing += [f"{name}: {s}" for s in sections if s and s not in doc]
        if ">>>" not in doc:
            missing.append(f"{name}: an example")
    assert not missing, missing


def test_the_doctests_are_many():
    assert {t.name.rsplit(".", 1)[-1] for t in DOCTESTS} >= set(PUBLIC)


@pytest.mark.parametrize("test", [_param(t) for t in DOCTESTS])
def test_docstring_examples_run(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes relative paths writes here
    failures: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=failures.append)
    assert result.failed == 0, "".join(failures)
