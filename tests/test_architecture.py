"""The layering holds: no import cycle inside mailadmin/ (function-level imports count), no layer
imports a higher one (the jobs layer from the services or below included), the campaign tables
are written only by mailadmin/services/, and no module runs over 450 lines, no class over 250, no
function over 50. Each checker is also shown a bad example, so none can pass by checking nothing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

import mailadmin
from mailadmin.extensions import db
from mailadmin.models import Campaign
from tests.support import write_guard

PACKAGE_DIR = Path(mailadmin.__file__).resolve().parent


# --- the import graph ----------------------------------------------------------------------------


def module_name(root: Path, path: Path) -> str:
    """`root/x/y.py` -> `<root name>.x.y`; a package's `__init__.py` is the package itself."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module name one import statement may load (`from x import y`: `x.y` and `x`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative import: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, anywhere in its body (functions too)."""
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            names = _imported_names(node, module, is_package)
            # `from x import y`: y is a submodule when there is such a file, else a name in x.
            submodules = [name for name in names[1:] if name in files] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.ImportFrom):
                targets.update(submodules)
                if len(submodules) < len(names) - 1 and names[0] in files:
                    targets.add(names[0])
            else:
                targets.update(name for name in names if name in files)
        targets.discard(module)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph(PACKAGE_DIR))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("def helper():\n    from pkg.sub import high\n    return high\n")
    (package / "sub" / "high.py").write_text("from .. import low\n")

    graph = import_graph(package)

    assert graph["pkg.low"] == {"pkg.sub.high"} and graph["pkg.sub.high"] == {"pkg.low"}
    assert find_cycle(graph) == ["pkg.low", "pkg.sub.high", "pkg.low"]


# Top to bottom (README, "Architecture"): a module imports its own layer or a lower one, never a
# higher one, not even inside a function. Each name is a first-level module or package of mailadmin/
# ("" is the package root, create_app). The job side sits above the web blueprints: the web process
# never imports the send loop, and nothing from the services down imports `mailadmin.jobs`.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"", "cli"}),  # the app factory and every flask command (the scheduler command starts jobs/)
    frozenset({"jobs"}),  # RQ entry points: the send loop, recovery, continuations, the worker class
    frozenset({"admin", "api", "audiences", "auth", "campaigns", "unsubscribe", "subscribe", "webhooks", "metrics", "devtools"}),  # web blueprints, dev tools
    frozenset({"services", "ops", "health", "errors"}),  # state changes; diagnosis, probes, error pages
    frozenset({"mail", "limits", "models", "queue", "counters"}),  # what the services build on (queue: RQ, no database; counters: metrics in Redis)
    frozenset({"extensions", "i18n", "settings", "settings_parsers", "settings_in_effect", "logging", "pii", "downloads"}),  # the foundation
)


def layer_of(module: str) -> int:
    """0 for the top layer, growing downwards; `pkg.services.x` is in the layer of `services`."""
    first = module.split(".")[1] if "." in module else ""
    for depth, names in enumerate(LAYERS):
        if first in names:
            return depth
    raise AssertionError(f"{module}: add `{first}` to a layer of LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """`low -> high` for every import of a higher layer."""
    return [f"{module} -> {target}" for module, targets in sorted(graph.items())
            for target in sorted(targets) if layer_of(target) < layer_of(module)]


def test_the_lower_layers_import_no_higher_one():
    assert upward_imports(import_graph(PACKAGE_DIR)) == []


def test_the_layer_check_sees_the_jobs_layer_imported_from_below(tmp_path):
    package = tmp_path / "pkg"
    for folder in ("jobs", "services", "queue"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from pkg.jobs import send\n")
    (package / "jobs" / "send.py").write_text("from pkg.services import delivery\nfrom pkg.queue import dispatch\n")
    (package / "services" / "delivery.py").write_text("from pkg.queue import dispatch\n")
    (package / "queue" / "dispatch.py").write_text("def enqueue():\n    from pkg.jobs.send import loop\n")

    assert upward_imports(import_graph(package)) == ["pkg.queue.dispatch -> pkg.jobs.send"]
    (package / "services" / "delivery.py").write_text("from pkg.jobs import send\n")
    assert "pkg.services.delivery -> pkg.jobs.send" in upward_imports(import_graph(package))


# --- writes to the campaign tables ---------------------------------------------------------------


def _write_from(path: Path, function_name: str):
    """A function whose code claims to live at `path` (as if that module wrote the table)."""
    source = (
        f"def {function_name}(campaign_id):\n"
        "    db.session.execute(update(Campaign.__table__).where(Campaign.__table__.c.id == campaign_id)"
        ".values(name='renamed'))\n"
    )
    namespace = {"db": db, "update": update, "Campaign": Campaign}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace[function_name]


def test_a_campaign_write_outside_services_is_caught(app):
    bad = _write_from(PACKAGE_DIR / "admin" / "rogue_writer.py", "rename_campaign")
    good = _write_from(PACKAGE_DIR / "services" / "some_service.py", "rename_campaign")

    write_guard.take_violations()
    good(1)
    assert write_guard.take_violations() == []
    bad(1)
    found = write_guard.take_violations()
    db.session.rollback()

    assert [(v.table, v.where.split(":")[0]) for v in found] == [("campaigns", "mailadmin/admin/rogue_writer.py")]


@pytest.mark.parametrize(
    ("statement", "table"),
    [
        ("UPDATE campaigns SET name=? WHERE campaigns.id = ?", "campaigns"),
        ('INSERT INTO "recipients" (email) VALUES (%(email)s)', "recipients"),
        ("DELETE FROM campaign_queue WHERE id = 1", "campaign_queue"),
        ("WITH claim_batch AS MATERIALIZED (SELECT id FROM recipients FOR UPDATE SKIP LOCKED) "
         "UPDATE recipients SET status='sending' FROM claim_batch", "recipients"),
        ("SELECT id FROM recipients WHERE campaign_id = 1 FOR UPDATE SKIP LOCKED", None),
        ("INSERT INTO suppressions (email) VALUES ('a') ON CONFLICT DO UPDATE SET email = 'a'", None),
        ("UPDATE campaigns_archive SET x = 1", None),
    ],
)
def test_the_write_guard_recognises_writes_to_the_campaign_tables(statement, table):
    assert write_guard.written_table(statement) == table


def test_writes_from_tests_and_factories_are_allowed():
    assert write_guard.check_write("UPDATE campaigns SET name = 'x'", sys._getframe()) is None


# --- the static complement: no write statement to the campaign tables outside services/ ----------

GUARDED_NAMES = ("Campaign", "Recipient", "CampaignQueue", "_campaigns", "_recipients", "_queues",
                 "campaigns_table", "recipients_table", "queues_table")


def static_write_sites(root: Path) -> list[str]:
    """`update(...)`/`insert(...)`/`delete(...)` of a campaign table, or SQL text writing one, outside services/."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if (root / "services") in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                target = ast.unparse(node.args[0])
                if name in ("update", "insert", "delete") and target.split(".")[0] in GUARDED_NAMES:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}({target})")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if write_guard.written_table(node.value):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} SQL text")
    return found


def test_no_module_outside_services_builds_a_write_to_the_campaign_tables():
    assert static_write_sites(PACKAGE_DIR) == []


def test_the_static_check_sees_a_write_built_outside_services(tmp_path):
    package = tmp_path / "pkg"
    (package / "services").mkdir(parents=True)
    (package / "web.py").write_text(
        "def rename(i):\n    db.session.execute(update(Campaign).where(Campaign.id == i).values(name='x'))\n"
        "RAW = 'DELETE FROM recipients WHERE campaign_id = :id'\n"
    )
    (package / "services" / "ok.py").write_text("def rename(i):\n    return update(Campaign)\n")

    assert sorted(static_write_sites(package)) == ["pkg/web.py:2 update(Campaign)", "pkg/web.py:3 SQL text"]


# --- one transaction helper -------------------------------------------------------------------------

def hand_written_transactions(root: Path) -> list[str]:
    """`path:line session.commit()` anywhere but the transaction helper, and `session.rollback()` in
    services/ (outside services only a read-only clean-up may roll back)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "services" / "transaction.py":
            continue
        name = path.relative_to(root.parent).as_posix()
        in_services = (root / "services") in path.parents
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                called = ast.unparse(node.func)
                if called.endswith("session.commit") or (in_services and called.endswith("session.rollback")):
                    found.append(f"{name}:{node.lineno} {called}()")
    return found


def test_only_the_transaction_helper_commits():
    assert hand_written_transactions(PACKAGE_DIR) == []


def test_the_commit_check_sees_a_commit_in_a_view_and_a_rollback_in_a_service(tmp_path):
    package = tmp_path / "pkg"
    _write(package / "services" / "transaction.py", "def transaction():\n    db.session.commit()\n")
    _write(package / "services" / "drafts.py", "def save():\n    db.session.rollback()\n")
    _write(package / "auth" / "views.py", "def login():\n    db.session.commit()\n")
    _write(package / "health.py", "def probe():\n    db.session.rollback()\n")

    assert hand_written_transactions(package) == [
        "pkg/auth/views.py:2 db.session.commit()", "pkg/services/drafts.py:2 db.session.rollback()",
    ]


# --- sizes: modules, classes, functions ------------------------------------------------------------

MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 50


def oversized(root: Path) -> list[str]:
    """`path (N lines)` for each module over MAX_MODULE_LINES, `path:line Name (N lines)` for each class
    over MAX_CLASS_LINES and each function over MAX_FUNCTION_LINES; paths relative to root's parent."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name} ({lines} lines)")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            is_class = isinstance(node, ast.ClassDef)
            if not (is_class or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            if length > (MAX_CLASS_LINES if is_class else MAX_FUNCTION_LINES):
                found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_module_class_or_function_is_over_its_size():
    assert oversized(PACKAGE_DIR) == []


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_size_check_sees_a_long_module_class_and_function(tmp_path):
    root = tmp_path / "pkg"
    statements = "".join(f"    x{n} = {n}\n" for n in range(MAX_FUNCTION_LINES))
    _write(root / "sprawling.py", "".join(f"X{n} = {n}\n" for n in range(MAX_MODULE_LINES + 1)))
    methods = "".join(f"    def m{n}(self):\n        return {n}\n" for n in range(MAX_CLASS_LINES // 2))
    _write(root / "big.py", f"class Big:\n{methods}")
    _write(root / "long.py", f"def long():\n{statements}")
    _write(root / "fine.py", f"def fine():\n{statements[: statements.index('x49')]}")

    assert oversized(root) == [
        f"pkg/big.py:1 Big ({MAX_CLASS_LINES + 1} lines)",
        f"pkg/long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)",
        f"pkg/sprawling.py ({MAX_MODULE_LINES + 1} lines)",
    ]
