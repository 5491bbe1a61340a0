"""The package's shape: rooms named for their ideas, small modules, one door to Wand, no import cycle."""

import ast
import os

from tests.conftest import ROOT

PACKAGE = os.path.join(ROOT, "shield")
MAX_LINES = 400
REGISTRY_EXEMPT = {"shield.settings"}  # only declares keys


def modules():
    """{dotted name: path} of every module under shield/."""
    found = {}
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def tree(path):
    with open(path, encoding="utf-8") as fh:
        return ast.parse(fh.read())


def imports_of(name, path, known):
    """The shield modules `name` imports, anywhere in it (lazy imports count too)."""
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name}


def test_no_module_is_over_400_lines():
    long = {}
    for name, path in modules().items():
        with open(path, encoding="utf-8") as fh:
            lines = sum(1 for _ in fh)
        if lines > MAX_LINES and name not in REGISTRY_EXEMPT:
            long[name] = lines
    assert long == {}


def test_wand_is_imported_by_the_decoder_alone():
    importers = set()
    for name, path in modules().items():
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "wand" for a in node.names):
                importers.add(name)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "wand":
                importers.add(name)
    assert importers == {"shield.image.decode"}


def test_no_import_cycle():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    # A package's __init__ is imported on the way to any of its modules: it may not import them back.
    cycles = []
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_rooms_exist():
    names = set(modules())
    for room, members in {
        "image": (
            "probe",
            "engine",
            "geometry",
            "negotiate",
            "smartcrop",
            "placeholders",
            "jpegmeta",
            "pillow_codecs",
            "decode",
            "budget",
        ),
        "cache": ("store", "hot", "flight", "purge", "tags"),
        "guard": ("security", "signing", "ratelimit"),
        "api": ("web", "admin"),
        "cli": ("main", "client", "purge", "stats", "projects", "sign", "warm"),
    }.items():
        assert {f"shield.{room}.{m}" for m in members} <= names, room
    flat = {n.split(".", 1)[1] for n in names if n.count(".") == 1}
    assert flat <= {
        "settings", "errors", "logs", "metrics", "params", "projects", "origin", "delivery", "answer",
        "originals", "variants", "headers", "pool", "pid", "stats", "statedb", "assets", "optimize", "sources", "uploads", "__main__",
        "image", "cache", "guard", "api", "cli", "cluster",
    }  # fmt: skip
