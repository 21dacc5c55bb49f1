"""Layers only look down: a module of espnet_pruning imports from its own package or
from a lower layer, never from a package beside it or above it (imports inside functions
included); an import inside a function says why in a comment."""

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_pruning"

#: The packages (and top-level modules) of espnet_pruning, bottom layer first, as in
#: docs/architecture.md §1. Packages of one layer are independent of each other.
LAYERS = (
    ("errors",),
    ("fileio", "hparams"),
    ("pruning", "whisper"),  # framework-free core
    ("specifiers",),  # prompts are Whisper tokens
    ("scoring", "corpora"),  # metrics; data preparation
    ("train",),  # trainer, checkpoints, batch schedule, masked training
    ("uslu",),  # the ESPnet model and preprocessor
    ("tasks",),  # the ESPnet task
    ("experiments", "inference", "reports"),  # drivers; decoding; paper reports
    ("bin",),  # command-line entry points
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(root: Path, path: Path) -> str:
    """Dotted name of ``path``, a file of the package at ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path) -> Iterator[Tuple[ast.stmt, str]]:
    """Every import of a file as ``(statement, absolute module name)``.

    ``from P import x`` yields ``P.x`` (``x`` may be a module of ``P``); relative imports
    are resolved.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                yield node, f"{base}.{alias.name}"


def top_name(root: Path, module: str) -> str:
    """The package (or top-level module) of ``root`` that ``module`` is in, else ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == root.name else ""


def layer_violations(root: Path) -> List[str]:
    """``file:line: message`` for every import that looks sideways or up."""
    found = []
    for path in sorted(root.rglob("*.py")):
        own = top_name(root, module_name(root, path))
        if not own:  # the root __init__.py
            continue
        for node, module in imports(root, path):
            other = top_name(root, module)
            if not other or other == own:
                continue
            if other not in LAYER or own not in LAYER:
                missing = own if own not in LAYER else other
                found.append(f"{path}:{node.lineno}: {missing} has no layer")
            elif LAYER[other] >= LAYER[own]:
                found.append(
                    f"{path}:{node.lineno}: {own} (layer {LAYER[own]}) imports "
                    f"{module} (layer {LAYER[other]})"
                )
    return found


def unexplained_lazy_imports(root: Path) -> List[str]:
    """``file:line`` of every import inside a function or class without a comment above.

    The comment sits on the line before the import (or before the first of a run of
    imports) and gives the measured start-up cost that keeps it out of the module top.
    """
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        top = {id(node) for node in tree.body}
        nodes = [
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top
        ]
        spanned = {i for n in nodes for i in range(n.lineno, n.end_lineno + 1)}
        for node in nodes:
            first = node.lineno
            while first - 1 in spanned:
                first -= 1
            if first < 2 or not lines[first - 2].strip().startswith("#"):
                found.append(f"{path}:{node.lineno}")
    return sorted(set(found))


def test_every_package_has_a_layer():
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert sorted(names) == sorted(LAYER)


def test_imports_only_look_down():
    assert layer_violations(PACKAGE) == []


def test_lazy_imports_say_why():
    assert unexplained_lazy_imports(PACKAGE) == []


def test_the_checks_find_upward_sideways_and_unexplained_imports(tmp_path):
    root = tmp_path / "espnet_pruning"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "tasks/__init__.py": "",
        "tasks/uslu.py": "from espnet_pruning.errors import InputError\n",
        "scoring/__init__.py": "from .text import read_text\n",
        "scoring/text.py": "def f():\n    from ..tasks import uslu\n",
        "corpora/__init__.py": "",
        "corpora/prep.py": "import espnet_pruning.scoring.text\n",
        "bin/__init__.py": "",
        "bin/cli.py": "def f():\n    # measured\n    import espnet_pruning.tasks\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert layer_violations(root) == [
        f"{root}/corpora/prep.py:1: corpora (layer 4) imports "
        "espnet_pruning.scoring.text (layer 4)",
        f"{root}/scoring/text.py:2: scoring (layer 4) imports "
        "espnet_pruning.tasks.uslu (layer 7)",
    ]
    assert unexplained_lazy_imports(root) == [f"{root}/scoring/text.py:2"]
