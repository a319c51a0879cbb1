"""The README's configuration tables list every variable the settings models read, each once, and nothing
else; docs/deployment.md lists every deployment parameter."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from infra.config import DeploymentConfig
from ips_runtime.settings import FunctionSettings
from localcloud.settings import LocalCloudSettings

ROOT = Path(__file__).resolve().parents[2]


def first_cells(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]


def test_the_readme_lists_every_variable_once() -> None:
    cells = first_cells((ROOT / "README.md").read_text(encoding="utf-8"), "## Configuration")
    listed = Counter(name for cell in cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell))
    assert [name for name, times in listed.items() if times > 1] == []
    read = {model.variable(field) for model in (FunctionSettings, LocalCloudSettings) for field in model.model_fields}
    assert set(listed) == read


def test_the_deployment_guide_lists_every_parameter() -> None:
    cells = first_cells((ROOT / "docs" / "deployment.md").read_text(encoding="utf-8"), "## Parameters")
    listed = {key for cell in cells for key in re.findall(r"`([a-z][A-Za-z]+)`", cell)}
    keys = {DeploymentConfig.variable(field).split()[0] for field in DeploymentConfig.model_fields}  # camelCase
    assert keys <= listed
