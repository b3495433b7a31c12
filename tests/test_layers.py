"""The house's floors (docs/ARCHITECTURE.md), read from the code's own imports with `ast`
(imports inside functions count too):

    3  main.py, run_with_submitit.py, tools/          command lines
    2  engine.py, detector.py                         a run's epochs and evaluation; the Python API
    1  models/, datasets/                             the detector; the data (neither imports the other)
    0  util/                                          the ground everything stands on

A module imports only from its own floor's package or from floors below it; nothing outside
tools/ imports tools/; no package has an import cycle. deploy/ imports none of the project.
"""
from __future__ import annotations

import ast
import os
from collections import defaultdict
from typing import Dict, List, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = ("util", "models", "datasets", "engine", "detector", "main", "run_with_submitit", "tools", "deploy")
FLOOR = {"util": 0, "models": 1, "datasets": 1, "engine": 2, "detector": 2, "main": 3, "run_with_submitit": 3,
         "tools": 3, "deploy": 0}
# (importer's package, imported package): allowed although it is not below, with the reason
ALLOWED = {
    ("run_with_submitit", "main"): "the Slurm launcher runs main.main(args) in each task: one command line "
                                   "wrapping the other",
    ("tools", "tools"): "a tool's own glue beside it (tools/inference_use.py for tools/inference.py), and "
                        "benchmarks reusing each other's input generators (tools/benchmark_*.py)",
}


def _modules() -> Dict[str, str]:
    """{dotted module name: path} of the project's Python files (tests and build outputs left out)."""
    found = {}
    for top in PROJECT:
        path = os.path.join(REPO, top + ".py")
        if os.path.isfile(path):
            found[top] = path
            continue
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "build")]
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3].replace(os.sep, ".")
                    found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, name)
    return found


def _imports(name: str, path: str) -> List[Tuple[str, int]]:
    """(imported project module, line) of every import in the file, relative ones resolved."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out += [(t, node.lineno) for t in targets if t.split(".")[0] in PROJECT]
    return out


def _edges() -> Dict[str, Set[Tuple[str, int]]]:
    modules = _modules()
    edges = defaultdict(set)
    for name, path in modules.items():
        for target, line in _imports(name, path):
            while target not in modules and "." in target:  # `from pkg import name` names an attribute
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                edges[name].add((target, line))
    return edges


def test_every_import_points_down():
    wrong = []
    for name, targets in _edges().items():
        src = name.split(".")[0]
        for target, line in targets:
            dst = target.split(".")[0]
            if src == dst or (src, dst) in ALLOWED:
                continue
            if src == "deploy" or FLOOR[dst] >= FLOOR[src]:
                wrong.append(f"{name} (line {line}) imports {target}")
    assert not wrong, "imports that do not point down a floor:\n  " + "\n  ".join(sorted(wrong))


def test_nothing_outside_tools_imports_tools():
    wrong = [f"{name} imports {t}" for name, targets in _edges().items() if not name.startswith("tools")
             for t, _ in targets if t.split(".")[0] == "tools"]
    assert not wrong, wrong


def test_no_import_cycles_inside_a_package():
    edges = {name: {t for t, _ in targets} for name, targets in _edges().items()}

    def cycle_from(start: str) -> List[str]:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt.split(".")[0] != start.split(".")[0]:
                    continue
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return []

    # a package's __init__ importing its own modules is how packages export names, not a cycle
    cycles = [cycle_from(name) for name in edges if not any(name == m.rpartition(".")[0] for m in edges)]
    cycles = [c for c in cycles if c and not any(m.count(".") < c[0].count(".") and c[0].startswith(m + ".")
                                                 for m in c)]
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """The checker itself: an upward import planted in a copy of util/ is reported."""
    import shutil
    for top in PROJECT:
        src = os.path.join(REPO, top + ".py")
        if os.path.isfile(src):
            shutil.copy(src, tmp_path)
        elif os.path.isdir(os.path.join(REPO, top)):
            shutil.copytree(os.path.join(REPO, top), tmp_path / top,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.so"))
    (tmp_path / "util" / "planted.py").write_text("def f():\n    from engine import evaluate\n")
    monkeypatch.setattr(__import__(__name__), "REPO", str(tmp_path))
    try:
        test_every_import_points_down()
    except AssertionError as exc:
        assert "util.planted (line 2) imports engine" in str(exc)
    else:
        raise AssertionError("the planted upward import was not found")
