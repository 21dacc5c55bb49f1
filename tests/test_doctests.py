"""The ``Examples:`` sections of the package's docstrings run as tests.

Modules are found by scanning the sources for ``>>>`` (cheap at collection time); each
one is imported and its examples are run with :mod:`doctest`, one test per module.
README's test command (``make -C tools test``, i.e. ``pytest tests``) runs them.
"""

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_pruning"


def _modules_with_examples():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_modules_with_examples_are_found():
    assert "espnet_pruning.pruning.select" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    # Examples that make temporary files (tempfile.mkdtemp) make them under tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    examples = sum(len(t.examples) for t in tests)
    assert examples > 0, f"{name}: '>>>' in the source but no docstring example found"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    assert result.attempted == examples
