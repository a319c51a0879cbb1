"""The domain (ips/*.py) knows its ports and types, not the adapters that implement them: the wiring
(ips_runtime) builds the adapters and hands them in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "layers" / "domain" / "python" / "ips"
# pydantic_settings: the domain takes plain settings types, reading the environment is ips_runtime.settings'.
ADAPTER_PACKAGES = (
    "ips.adapters",
    "ips_runtime",
    "pydantic_settings",
    "requests",
    "urllib3",
    "boto3",
    "botocore",
    "pymongo",
)


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda path: path.name)
def test_domain_module_imports_no_adapter(path: Path) -> None:
    forbidden = {
        module
        for module in imported_modules(path)
        if any(module == package or module.startswith(f"{package}.") for package in ADAPTER_PACKAGES)
    }
    assert not forbidden, f"{path.name} imports {sorted(forbidden)}"


def test_the_check_reads_the_modules_that_used_to_import_the_http_client() -> None:
    names = {path.name for path in DOMAIN.glob("*.py")}
    assert {"processing.py", "intake.py", "webhook.py", "ports.py", "fetching.py"} <= names
    assert "requests" in imported_modules(DOMAIN / "adapters" / "outbound" / "client.py")  # the check can fire
