"""The floor plan of glm/: a short root, wings that import only downward, no import cycle, and the
engine and serving free of the web stack. Read from the source with ast, so nothing is imported."""

import ast
from pathlib import Path

import pytest

GLM = Path(__file__).resolve().parents[2] / "glm"

# Lowest first: a module may import its own layer and those before it, never one after it.
LAYERS = (
    ("glm.errors", "glm.startup", "glm.redacted", "glm.chat_templates"),
    ("glm.prompt", "glm.constraint", "glm.quant"),
    ("glm.tools",),
    ("glm.models",),
    ("glm.engine",),
    ("glm.metrics", "glm.embeddings"),
    ("glm.stream",),
    ("glm.service",),
    ("glm.schemas", "glm.encoders"),
    ("glm.serving",),
    ("glm.http",),
    ("glm.routes",),
    ("glm.app",),
    ("glm.cli",),
)
WEB_STACK = ("flask", "werkzeug", "gevent")


def module_name(path: Path) -> str:
    parts = path.relative_to(GLM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in GLM.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every module `name` imports, at its top or inside a function; `from a import b` is a.b where
    that is a module."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found


def layer(name: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return rank
    raise AssertionError(f"{name} is in no layer of tests/unit/test_architecture.py")


def test_the_root_of_glm_has_at_most_twelve_modules():
    root = sorted(path.name for path in GLM.glob("*.py"))
    assert len(root) <= 12, root


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name != "glm"))
def test_a_module_imports_only_its_own_layer_or_lower_ones(name):
    upward = [other for other in imports(name) if other in MODULES and other != "glm" and layer(other) > layer(name)]
    assert upward == [], f"{name} imports {upward} from a higher layer"


@pytest.mark.parametrize("wing", ["glm.engine", "glm.serving"])
def test_the_engine_and_serving_know_nothing_of_the_web_stack(wing):
    found = {
        (name, other)
        for name in MODULES
        if name.startswith(wing + ".")
        for other in imports(name)
        if other.split(".")[0] in WEB_STACK
    }
    assert found == set()


def test_no_module_imports_itself_through_others():
    graph = {name: {other for other in imports(name) if other in MODULES} for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise AssertionError(" -> ".join(cycle))
        if name in done:
            return
        for other in graph[name]:
            visit(other, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
