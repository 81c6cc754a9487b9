"""The house's rules, read from the source: no import circle, no private name imported across files, and
the table of contents (cli, pipeline) imports neither huggingface_hub (it reads HF_ENDPOINT when first
imported, which the Hub session sets) nor torch (`--help` and `--plan` stay fast)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "release"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path], top_only: bool):
    """(module imported, names) for each `release` import; top_only: those outside functions."""
    tree = ast.parse(path.read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if top_only and id(node) in inner:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "release":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in modules else node.module), alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "release":
                    yield alias.name, None


def test_no_module_of_release_imports_itself_back_in_a_circle():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target, _ in _imports(path, modules, top_only=True):
            # importing release.a.b runs release/a/__init__.py first, unless the importer is inside release.a
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    circles = []

    def visit(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt in graph:
                visit(nxt, path + [nxt])

    for name in sorted(graph):
        visit(name, [name])
    assert circles == []


def test_no_private_name_is_imported_from_another_file():
    modules = _modules()
    private = [f"{name}: {target}.{imported}" for name, path in modules.items()
               for target, imported in _imports(path, modules, top_only=False)
               if imported and imported.startswith("_") and not imported.startswith("__")]
    assert private == []


def test_the_table_of_contents_imports_neither_the_hub_client_nor_torch():
    code = ("import sys, release.cli, release.pipeline, release.config\n"
            "print(sorted(m for m in ('huggingface_hub', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
