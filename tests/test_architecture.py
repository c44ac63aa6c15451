"""The house rules, pinned: who may import whom, what a worker loads, how big a file grows.

The import rules read every ``import`` in the source (module level and inside functions) with ``ast``; the
load rules start a fresh interpreter and look at ``sys.modules``. docs/architecture.md draws the map these
rules keep true. Each checker is also run on a small made-up tree that breaks its rule, so that a checker
that stopped seeing violations fails here too.
"""

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("teleder", "cases", "inference", "training", "interop", "learning", "similarity")
PURE_CORE = ("inference.package", "inference.preprocessing", "inference.runtime")
# The one module of ``cases`` that inference may use to change a case: claim, record results, fail, sweep.
DECLARED_INTERFACE = "cases.services.analysis"
# What else inference may import from cases: the audit trail, the models (users, foreign keys), and the
# shared scaffolding of pages and API (base view, permissions, role checks, vocabularies).
INFERENCE_MAY_IMPORT_FROM_CASES = (
    DECLARED_INTERFACE,
    "cases.audit",
    "cases.models",
    "cases.vocabulary",
    "cases.permissions",
    "cases.views.common",
    "cases.api.base",
    "cases.api.views",
    "cases.api.permissions",
    "cases.api.urls",
)
# The similarity library sits above cases and inference; the analysis task stores embeddings through these
# two modules (which import nothing from inference), so the apps meet in one declared place.
INFERENCE_MAY_IMPORT_FROM_SIMILARITY = ("similarity.store", "similarity.embedding")
# Pure NumPy: the embedding, the index and the retrieval report (training's evaluate-explanations uses them).
SIMILARITY_PURE = ("similarity.embedding", "similarity.index", "similarity.evaluation")
WORKER_MUST_NOT_LOAD = ("tensorflow", "keras", "tf2onnx", "torch", "training")
MAX_LINES = 600
# Files that may still pass the limit, each with the reason; the list only shrinks.
LONG_FILE_EXCEPTIONS: dict[str, str] = {}


# The import map --------------------------------------------------------------------------------------


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(root: Path, apps: tuple[str, ...] = APPS) -> Iterator[Path]:
    for app in apps:
        if not (root / app).is_dir():
            continue
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def imports_of(path: Path, root: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every absolute or relative import in the file, and every dotted string passed to
    ``include()`` or ``import_module()`` (imports by name are imports too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from package import module`` imports the submodule too.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            not top_level_only
            and isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("include", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations(root: Path, *, source: str, forbidden: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Imports of ``forbidden`` (a package) from files of ``source`` (a package), except ``allowed``."""
    found = []
    for path in source_files(root, (source,)):
        for line, module in imports_of(path, root):
            top = module.split(".")[0]
            if top != forbidden or not is_module(module, root):
                continue
            if any(module == ok or module.startswith(ok + ".") for ok in allowed):
                continue
            found.append(f"{path.relative_to(root)}:{line} imports {module}")
    return found


def import_cycles(root: Path) -> list[list[str]]:
    """Cycles among the project's modules through module-level imports (what runs at import time)."""
    graph: dict[str, set[str]] = {}
    for path in source_files(root):
        name = module_name(path, root)
        graph[name] = {
            module for _, module in imports_of(path, root, top_level_only=True) if is_module(module, root)
        } - {name}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # A package importing its own submodules (re-exports in __init__) is not a cycle between files.
    return [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c[1:])]


def free_string_audit_actions(root: Path) -> list[str]:
    """``audit_record(action="...")`` calls: every action must be an ``AuditAction`` member, not a string."""
    found = []
    for path in source_files(root):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "audit_record":
                for keyword in node.keywords:
                    # A member (AuditAction.CASE_VIEW) or a parameter passing one on; never a string.
                    if keyword.arg == "action" and isinstance(keyword.value, ast.Constant | ast.JoinedStr):
                        found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


CODE_FOLDERS = (*APPS, "tests", "benchmarks", "scripts", "examples", "docker")


def long_files(root: Path) -> list[str]:
    found = []
    paths = [p for folder in CODE_FOLDERS if (root / folder).is_dir() for p in (root / folder).rglob("*.py")]
    for path in sorted(paths):
        relative = path.relative_to(root).as_posix()
        if "migrations" in path.parts:
            continue
        lines = len(path.read_text(errors="replace").splitlines())
        if lines > MAX_LINES and relative not in LONG_FILE_EXCEPTIONS:
            found.append(f"{relative}: {lines} lines")
    return found


def test_cases_imports_nothing_from_inference():
    """``inference`` sits above ``cases``: cases know the worker only by the task name they enqueue."""
    assert violations(ROOT, source="cases", forbidden="inference") == []


def test_inference_changes_cases_only_through_the_declared_interface():
    """No reaching into cases' services or selectors: claim, record and fail go through one module."""
    assert (
        violations(ROOT, source="inference", forbidden="cases", allowed=INFERENCE_MAY_IMPORT_FROM_CASES) == []
    )


def test_cases_import_nothing_from_similarity_and_inference_only_its_declared_interface():
    assert violations(ROOT, source="cases", forbidden="similarity") == []
    assert (
        violations(
            ROOT, source="inference", forbidden="similarity", allowed=INFERENCE_MAY_IMPORT_FROM_SIMILARITY
        )
        == []
    )
    for module in INFERENCE_MAY_IMPORT_FROM_SIMILARITY:
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert [m for _, m in imports_of(path, ROOT) if m.split(".")[0] == "inference"] == [], module


def test_similaritys_pure_modules_load_no_django():
    loaded = loaded_modules("\n".join(f"import {m}" for m in SIMILARITY_PURE), django_settings=False)
    assert "similarity" in loaded and "django" not in loaded and "inference" not in loaded


def pure_core_closure(root: Path) -> dict[str, list[str]]:
    """Every project module the pure core reaches through its imports -> the imports that break purity
    (Django, or an app other than the pure modules of ``inference``)."""
    seen, todo, problems = set(), list(PURE_CORE), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        bad = []
        for line, module in imports_of(path, root):
            top = module.split(".")[0]
            if top == "django":
                bad.append(f"{line}: {module}")
            elif top in APPS and is_module(module, root):
                if top == "inference" and root.joinpath(*module.split(".")).with_suffix(".py").exists():
                    todo.append(module)
                else:
                    bad.append(f"{line}: {module}")
        problems[name] = bad
    return problems


def test_the_pure_core_and_training_import_no_django_and_no_app():
    """The pure core (and every inference module it reaches) imports no Django and no other app."""
    closure = pure_core_closure(ROOT)
    assert set(PURE_CORE) <= set(closure)
    assert {name: bad for name, bad in closure.items() if bad} == {}
    assert violations(ROOT, source="training", forbidden="cases") == []
    assert violations(ROOT, source="training", forbidden="teleder") == []


def test_no_import_cycles_between_files():
    assert import_cycles(ROOT) == []


def test_every_audit_event_names_a_typed_action():
    assert free_string_audit_actions(ROOT) == []


def test_no_file_over_600_lines_outside_migrations():
    assert long_files(ROOT) == []


def test_the_clinical_and_model_vocabularies_agree():
    """Sites and sexes: the model's metadata vocabulary (pure core) and the clinic's choices are one list."""
    from cases.vocabulary import Sex, Site
    from inference.preprocessing import SEXES, SITES

    assert tuple(s for s in Site.values if s != Site.UNKNOWN) == SITES
    assert tuple(s for s in Sex.values if s != Sex.UNKNOWN) == SEXES


def test_the_clinic_explains_the_ai_gate_in_the_workers_words():
    """Why an image was not assessed: the clinic's sentences (cases) are the gate's (inference.quality)."""
    from cases import vocabulary
    from inference import quality

    assert vocabulary.NOT_ASSESSED_REASONS == quality.REASONS
    assert vocabulary.RESUBMIT_HINT == quality.RESUBMIT_HINT
    for reasons in ([], ["blurred"], ["too_dark", "not_dermoscopy"]):
        assert vocabulary.explain_not_assessed(reasons) == quality.explain(reasons)


# What a process loads ----------------------------------------------------------------------------------


def loaded_modules(code: str, *, django_settings: bool) -> list[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    if django_settings:
        env["DJANGO_SETTINGS_MODULE"] = "teleder.settings"
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_worker_start_loads_no_tensorflow_keras_tf2onnx_torch_or_training():
    # What `celery -A teleder worker` imports before its first task: Django, the app, every tasks module,
    # and the ONNX runtime the first case uses.
    loaded = loaded_modules(
        "import django; django.setup()\n"
        "from teleder.celery import app\n"
        "app.loader.import_default_modules()\n"
        "import inference.tasks, inference.heartbeat, inference.runtime, inference.registry",
        django_settings=True,
    )
    assert "inference" in loaded and "onnxruntime" in loaded
    assert [m for m in WORKER_MUST_NOT_LOAD if m in loaded] == []


def test_training_imports_without_django_settings():
    modules = sorted(
        module_name(p, ROOT) for p in source_files(ROOT, ("training",)) if p.name != "__main__.py"
    )
    loaded = loaded_modules("\n".join(f"import {m}" for m in modules), django_settings=False)
    assert "training" in loaded and "django" not in loaded


def test_the_pure_core_loads_no_django():
    loaded = loaded_modules("\n".join(f"import {m}" for m in PURE_CORE), django_settings=False)
    assert "django" not in loaded and "cases" not in loaded


# The checkers see violations ---------------------------------------------------------------------------


@pytest.fixture
def broken_tree(tmp_path):
    """A made-up project that breaks each rule once."""
    files = {
        "cases/__init__.py": "",
        "cases/views.py": "def page():\n    from inference.models import ModelVersion\n",
        "cases/urls.py": "from django.urls import include\nurls = [include('inference.urls')]\n",
        "cases/audit.py": "from cases.views import page\n",
        "cases/services.py": "from cases.audit import x\nimport cases.models\n",
        "cases/models.py": "from cases.services import y\n",
        "cases/log.py": "audit_record(actor=None, action='case.view', obj=None)\n",
        "inference/__init__.py": "",
        "inference/models.py": "",
        "inference/urls.py": "",
        "inference/tasks.py": "from cases.services import case_submit\nfrom cases.models import Case\n",
        "teleder/__init__.py": "",
        "training/__init__.py": "",
        "training/big.py": "x = 1\n" * (MAX_LINES + 1),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checkers_catch_a_broken_tree(broken_tree):
    assert violations(broken_tree, source="cases", forbidden="inference") == [
        "cases/urls.py:2 imports inference.urls",
        "cases/views.py:2 imports inference.models",
    ]
    assert violations(
        broken_tree, source="inference", forbidden="cases", allowed=INFERENCE_MAY_IMPORT_FROM_CASES
    ) == ["inference/tasks.py:1 imports cases.services"]
    assert import_cycles(broken_tree) == [["cases.models", "cases.services", "cases.models"]]
    assert free_string_audit_actions(broken_tree) == ["cases/log.py:1"]
    assert long_files(broken_tree) == [f"training/big.py: {MAX_LINES + 1} lines"]
