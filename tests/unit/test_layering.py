"""The layout's dependency rule (docs/architecture.md, "Layout"): handlers (functions/) -> ips_runtime (each function's
composition root) -> the use cases (ips/<use case>/) -> the shared kernel (ips/shared/); the adapters (ips_adapters/)
implement the ports and are built by ips_runtime, never imported by the domain. Read from every module's imports
(those under TYPE_CHECKING and inside functions included), so an import against the rule fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / "layers" / "domain" / "python"
DOMAIN = PYTHON / "ips"
SHARED = DOMAIN / "shared"
ADAPTERS = PYTHON / "ips_adapters"
RUNTIME = PYTHON / "ips_runtime"
USE_CASES = ("intake", "expansion", "processing", "completion", "reconcile", "status")
# The reconciler mends what the other use cases left undone, by running their use cases: the one use case that
# imports others.
RUNS = {"reconcile": {"intake", "completion", "processing"}}
# What the domain never imports: the adapters, the wiring, the handlers, and the libraries they wrap.
# pydantic_settings: the domain takes plain settings types; reading the environment is ips_runtime.settings'.
NOT_IN_THE_DOMAIN = (
    "ips_adapters",
    "ips_runtime",
    "functions",
    "pydantic_settings",
    "boto3",
    "botocore",
    "pymongo",
    "requests",
    "urllib3",
)


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def label(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def use_case_of(path: Path) -> str:
    return path.relative_to(DOMAIN).parts[0]


@pytest.mark.parametrize("path", sources(DOMAIN), ids=label)
def test_the_domain_imports_no_adapter_no_wiring_and_no_infrastructure_library(path: Path) -> None:
    forbidden = {module for module in imported_modules(path) if within(module, *NOT_IN_THE_DOMAIN)}
    assert not forbidden, f"{label(path)} imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", sources(SHARED), ids=label)
def test_the_shared_kernel_imports_no_use_case(path: Path) -> None:
    upward = {module for module in imported_modules(path) if within(module, *(f"ips.{name}" for name in USE_CASES))}
    assert not upward, f"{label(path)} imports {sorted(upward)}"


USE_CASE_MODULES = [path for name in USE_CASES for path in sources(DOMAIN / name) if path.name != "fakes.py"]


@pytest.mark.parametrize("path", USE_CASE_MODULES, ids=label)
def test_a_use_case_imports_only_itself_and_the_shared_kernel(path: Path) -> None:
    """The reconciler also runs the use cases it mends (RUNS); no use case imports another's fakes."""
    own = use_case_of(path)
    allowed = ("ips.shared", f"ips.{own}", *(f"ips.{other}" for other in RUNS.get(own, ())))
    others = {
        module
        for module in imported_modules(path)
        if within(module, "ips") and (not within(module, *allowed) or module.endswith(".fakes"))
    }
    assert not others, f"{label(path)} imports {sorted(others)}"


DEPLOYED = [*sources(PYTHON), *sources(ROOT / "functions")]


@pytest.mark.parametrize("path", [path for path in DEPLOYED if path.name != "fakes.py"], ids=label)
def test_no_deployed_module_imports_a_fake(path: Path) -> None:
    """The fakes are not deployed (the domain layer's asset excludes every fakes.py): only tests and other fakes
    may import them."""
    fakes = {module for module in imported_modules(path) if module.endswith(".fakes")}
    assert not fakes, f"{label(path)} imports {sorted(fakes)}"


@pytest.mark.parametrize("path", sources(ADAPTERS), ids=label)
def test_an_adapter_imports_ports_and_the_shared_kernel_never_a_use_case_service(path: Path) -> None:
    """A use case's policy is a value its ports take (the receivers' pause is the webhook RetryPolicy's)."""
    allowed = ("ips.shared", *(f"ips.{name}.{module}" for name in USE_CASES for module in ("ports", "policy")))
    wrong = {
        module
        for module in imported_modules(path)
        if within(module, "ips_runtime", "functions") or (within(module, "ips") and not within(module, *allowed))
    }
    assert not wrong, f"{label(path)} imports {sorted(wrong)}"


# What the deployed code never imports: what runs it here (the local cloud), deploys it, measures or tests it.
HARNESS = ("localcloud", "infra", "bench", "tests")


@pytest.mark.parametrize("path", [*sources(RUNTIME), *sources(ROOT / "functions")], ids=label)
def test_the_wiring_and_the_handlers_import_nothing_above_them(path: Path) -> None:
    """ips_runtime (the composition roots) never imports a handler; neither imports the harness."""
    above = (*HARNESS, "functions") if path.is_relative_to(RUNTIME) else HARNESS
    upward = {module for module in imported_modules(path) if within(module, *above)}
    assert not upward, f"{label(path)} imports {sorted(upward)}"


@pytest.mark.parametrize("name", USE_CASES)
def test_each_use_case_has_its_service_its_ports_and_its_fakes(name: str) -> None:
    assert {"__init__.py", "service.py", "ports.py", "fakes.py"} <= {path.name for path in (DOMAIN / name).iterdir()}


def test_the_readmes_first_screen_shows_where_each_use_case_lives_and_which_function_runs_it() -> None:
    """Its tree (before "Two commands"): a row per use case, `    <package>/   <functions>   <what it does>`, in
    columns; every function of the topology runs one."""
    from infra.topology import TOPOLOGY

    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Two commands\n", 1)[0]
    assert len(first_screen.splitlines()) <= 45
    tree = first_screen.split("## Where things are", 1)[1].split("```")[1].splitlines()
    rows = [re.split(r"\s{2,}", line.strip()) for line in tree if line.startswith("    ") and line[4] != " "]
    packages = {row[0].rstrip("/") for row in rows[1:]}
    assert set(USE_CASES) <= packages and all((DOMAIN / name).is_dir() for name in packages)
    # A use case's row is `package/  functions  what it does`; a row it continues on starts in the functions column.
    functions = [row[1] for row in rows[1:] if len(row) == 3]
    functions += [re.split(r"\s{2,}", line.strip())[0] for line in tree if re.match(r" {18}\S", line)]
    run_by = {name.strip() for names in functions for name in names.split(",")}
    assert {spec.name for spec in TOPOLOGY.functions} <= run_by
    for path in ("functions/", "ips_runtime/", "ips_adapters/"):
        assert any(line.lstrip().startswith(path) for line in tree), path


def test_the_checks_read_every_package_and_can_fire() -> None:
    assert {path.name for path in DOMAIN.iterdir() if path.is_dir() and path.name != "__pycache__"} == {
        "shared",
        *USE_CASES,
    }
    assert len(USE_CASE_MODULES) >= 2 * len(USE_CASES) and len(sources(SHARED)) > 10 and len(sources(ADAPTERS)) > 10
    assert "requests" in imported_modules(ADAPTERS / "outbound" / "client.py")
    assert "ips.intake.service" in imported_modules(DOMAIN / "reconcile" / "service.py")
    assert "ips.processing.fakes" in imported_modules(DOMAIN / "reconcile" / "fakes.py")
    assert "ips.processing.ports" in imported_modules(ADAPTERS / "mongo_reuse.py")
