"""The package layering, as a test of the import graph (the issue's layering contract): a package imports only
packages of lower layers, and no modules import each other in a loop. Lazy imports inside functions count."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "otel_ml"

LAYERS: list[set[str]] = [
    {"semconv", "errors", "sealed", "lifetime", "auth"},
    {"decode", "http_server", "instrument"},  # columns from spans; the one HTTP server; the client side
    {"profile"},  # sketches, windows, baselines
    {"analyze"},  # drift and performance scores
    {"labels"},  # ground truth meets predictions
    {"receiver"},  # sources: OTLP gRPC/HTTP, Kafka, worker processes
    {"core"},  # pipeline, live models, evaluator, snapshot
    {"export", "state"},  # readers of snapshots / the two state backends
    {"read"},  # the read side of state directories and profiles
    {"ui"},
    {"config"},
    {"service"},
    {"demo", "notebook"},
    {"cli", "__init__"},
]
"""Lowest first. ``instrument`` is the client side: it may import ``semconv`` alone (test_packaging.py)."""

def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def _is_module(name: str) -> bool:
    path = ROOT.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir() or any(path.parent.glob(f"{path.name}.*.so"))


@functools.cache
def _imports() -> dict[str, set[str]]:
    """otel_ml module → the otel_ml modules it imports (anywhere in its body); ``from package import module``
    is an import of that module, not of the package."""
    out: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("otel_ml"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("otel_ml"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if _is_module(sub) else node.module)
        out[module] = found
    return out


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in _imports()}
    unplaced = sorted(p for p in packages if not any(p in layer for layer in LAYERS))
    assert not unplaced, f"place these packages in LAYERS: {unplaced}"


def test_no_package_imports_a_higher_or_sibling_layer() -> None:
    wrong = []
    for module, imported in sorted(_imports().items()):
        mine = _package(module)
        for target in sorted(imported):
            theirs = _package(target)
            if theirs != mine and target != "otel_ml" and _layer(theirs) >= _layer(mine):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_loops_between_modules() -> None:
    graph = {m: {t for t in ts if t in _imports()} for m, ts in _imports().items()}
    loops: list[list[str]] = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                loops.append([*path[path.index(nxt):], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt], on_path | {nxt}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start}, done)
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def _lines(module: str) -> int:
    return len((ROOT / module).read_text().splitlines())


def test_the_shape_the_core_split_promised() -> None:
    """Issue 28's limits, kept: service.py constructs and wires (≤ 250 lines), no class over 400 lines, Kafka's
    client imported by the Kafka source and the shared backend only (the AWS SDK by the Kinesis source only), README
    names every module of ≥ 100 lines."""
    assert _lines("service.py") <= 250
    big, kafka, aws, unnamed = [], [], [], []
    readme = (ROOT.parent / "README.md").read_text()
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        rel = str(path.relative_to(ROOT))
        big += [f"{rel}:{n.name} {n.end_lineno - n.lineno + 1}" for n in ast.walk(tree)
                if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > 400]
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if any("confluent_kafka" in ast.dump(n) for n in imports):
            kafka.append(rel)
        if any("boto" in ast.dump(n) for n in imports):
            aws.append(rel)
        if _lines(rel) >= 100 and path.name not in readme:
            unnamed.append(rel)
    assert not big, f"classes over 400 lines: {big}"
    assert kafka == ["receiver/kafka.py", "state/changelog.py", "state/shared.py"], kafka
    assert aws == ["receiver/kinesis.py"], aws
    assert not unnamed, f"README 'How it works' names none of: {unnamed}"
