"""The package's import graph, read from the source with ``ast``: no cycle, and no import hidden in a
function except the heavy optional ones listed here."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "musicrnn"
# Imports allowed inside functions, and why: heavy or optional packages a command may never need.
LAZY_OK = {
    "music21": "seconds to import; only for ABC/MusicXML and the Bach chorales",
    "matplotlib": "half a second; only when drawing (and its backend choice is process-wide)",
    "pretty_midi": "only when a file is read or written",
    "rich": "progress bars of downloads and parsing only",
    "wandb": "optional, installed by those who log to wandb", "tensorboard": "optional logger",
    "resource": "POSIX only: the memory cap of parsing workers",
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.AST) -> list[str]:
    """Names ``import a.b`` / ``from a.b import c`` refer to (``a.b`` and ``a.b.c``: ``c`` may be a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return []


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports, at any depth (a cycle through a function counts)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # ``import a.b.c`` also runs ``a`` and ``a.b``, except those already being imported: the
        # packages that hold ``name`` itself (a submodule importing its sibling is no cycle).
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for target in imported_modules(node):
                parts = target.split(".")
                targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        graph[name] = (targets & modules.keys()) - ancestors - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    done, stack = set(), []

    def visit(node):
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        done.add(stack.pop())
        return None

    for node in sorted(graph):
        if node not in done and (cycle := visit(node)):
            return cycle
    return None


def hidden_imports(root: Path) -> list[str]:
    """``module:line name`` of every import inside a function that is not in ``LAZY_OK``."""
    found = []
    for path in root.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                targets = imported_modules(node)
                if isinstance(node, ast.ImportFrom):
                    targets = targets[:1]  # the module, not the names imported from it
                for target in targets:
                    if target.split(".")[0] not in LAZY_OK:
                        found.append(f"{module_name(path, root)}:{node.lineno} {target}")
    return sorted(set(found))


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_musicrnn_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "musicrnn.models.base" in graph["musicrnn.models.rnn"]  # the graph sees imports at all
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_checkpoint_io_imports_no_model():
    assert not any(m.startswith("musicrnn.models") for m in import_graph(PACKAGE)["musicrnn.checkpoint"])


def test_no_import_hidden_in_a_function():
    assert hidden_imports(PACKAGE) == []


def test_a_cycle_through_a_function_is_found(tmp_path):
    """The cycle the package once had: checkpoint imported the models inside a function."""
    pkg = write_package(tmp_path / "pkg", {
        "__init__.py": "",
        "checkpoint.py": "def load():\n    from pkg.models import Model\n",
        "models/__init__.py": "from pkg.models.base import Model\n",
        "models/base.py": "import torch\nfrom pkg.checkpoint import load\nclass Model: pass\n",
    })
    assert find_cycle(import_graph(pkg)) == ["pkg.checkpoint", "pkg.models", "pkg.models.base", "pkg.checkpoint"]
    assert hidden_imports(pkg) == ["pkg.checkpoint:2 pkg.models"]


def test_siblings_in_a_package_are_no_cycle(tmp_path):
    pkg = write_package(tmp_path / "pkg", {
        "__init__.py": "", "models/__init__.py": "from pkg.models.rnn import RNN\n",
        "models/base.py": "class Base: pass\n", "models/rnn.py": "from pkg.models.base import Base\n",
    })
    assert find_cycle(import_graph(pkg)) is None
