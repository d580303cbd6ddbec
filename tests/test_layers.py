"""Floors (DESIGN.md, "Where the next capabilities live"): an app imports only from floors below
it. `core` is the ground floor and imports no app; `config` is the roof and may import anything;
the tests are no floor. Read from the source with `ast`, so an import inside a function counts
as much as one at the top of a module.

Where a lower app must set off something a higher one owns (signing out everywhere voids desktop
tickets, deleting a workspace ends its sessions), it sends a signal it declares itself and the
higher app connects a receiver in its AppConfig.ready().
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. An app added to the project goes on the floor of the highest app it imports
# (or higher), and before every app that imports it.
FLOORS = (
    "core",
    "audit",
    "accounts",
    "workspaces",
    "sessions_app",
    "recordings",
    "vnc_proxy",
    "app_proxy",
    "streaming",
    "socketio_server",
)
ROOF = "config"


def imported_packages(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.partition(".")[0]))
    return found


def upward_imports(root: Path, floors: tuple[str, ...], roof: str) -> list[str]:
    """`path:line: app imports higher` for every import of a higher floor (or of the roof)."""
    height = {app: floor for floor, app in enumerate(floors)} | {roof: len(floors)}
    found = []
    for floor, app in enumerate(floors):
        for path in sorted((root / app).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, package in imported_packages(tree):
                if height.get(package, -1) > floor:
                    found.append(f"{path.relative_to(root)}:{line}: {app} imports {package}")
    return found


def test_no_app_imports_from_a_floor_above_it():
    found = upward_imports(ROOT, FLOORS, ROOF)
    assert not found, "imports from a higher floor (lowest first: {}):\n{}".format(
        " < ".join((*FLOORS, ROOF)), "\n".join(found)
    )


def test_every_app_of_the_project_stands_on_a_floor():
    ours = {
        config.name.partition(".")[0]
        for config in apps.get_app_configs()
        if Path(config.path).resolve().parent == ROOT
    }
    assert ours - {ROOF} <= set(FLOORS), f"add to FLOORS: {sorted(ours - {ROOF} - set(FLOORS))}"


def test_the_check_sees_both_import_forms_at_any_depth(tmp_path):
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    (tmp_path / "low" / "services.py").write_text(
        "import high.models\n"
        "from . import selectors\n"
        "def act():\n"
        "    from high.services import react\n"
        "    import low.selectors, os\n"
    )
    (tmp_path / "high" / "services.py").write_text("from low import services\nimport roof\n")

    assert upward_imports(tmp_path, ("low", "high"), "roof") == [
        "low/services.py:1: low imports high",
        "low/services.py:4: low imports high",
        "high/services.py:2: high imports roof",
    ]
