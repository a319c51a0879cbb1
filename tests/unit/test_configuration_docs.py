"""The README's configuration tables list every variable the settings models read, each once, with its default,
and nothing else; docs/deployment.md lists every deployment parameter. So a new setting (a field of a part of
ips_runtime.settings) fails here until its README row exists."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from infra.config import DeploymentConfig
from ips_runtime.settings import parts
from localcloud.settings import LocalCloudSettings

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def rows(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("| `")]


def named(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


def readme_rows(heading: str = "## Configuration") -> list[list[str]]:
    return rows((ROOT / "README.md").read_text(encoding="utf-8"), heading)


def renderings(value: object) -> set[str]:
    """How the README may write a default: as itself, with thousands separators, in MiB or megapixels."""
    if isinstance(value, bool):
        return {"`on`" if value else "`off`"}
    if isinstance(value, int | float):
        number = int(value) if float(value).is_integer() else value
        shown = {str(number), f"{number:,}"}
        if isinstance(number, int) and number % MIB == 0:
            shown.add(f"{number // MIB} MiB")
        if isinstance(number, int) and number % 1_000_000 == 0:
            shown.add(f"{number // 1_000_000} MP")
        return shown
    if isinstance(value, str):
        return {f"`{value}`"}
    return {"empty", "`{}`", "(none)"}  # the empty collections and None


def test_the_readme_lists_every_variable_once() -> None:
    listed = Counter(name for row in readme_rows() for name in named(row[0]))
    assert [name for name, times in listed.items() if times > 1] == []
    functions = {variable for part in parts() for variable in part.variables()}
    local = {LocalCloudSettings.variable(field) for field in LocalCloudSettings.model_fields}
    assert set(listed) == functions | local


def test_the_readme_gives_each_function_settings_default() -> None:
    """Each row's default cell: `(required)` for the resources that must be set, else every variable's default
    (in order, or the topology's, which the stack and the local cloud set)."""
    defaults = {}
    for part in parts():
        for name, field in part.model_fields.items():
            value = None if field.is_required() else field.get_default(call_default_factory=True)
            defaults[part.variable(name)] = (field.is_required(), value)
    wrong = []
    for row in readme_rows("### The functions"):
        variables = named(row[0])
        cell = row[2]
        required = {defaults[name][0] for name in variables}
        if required == {True}:
            if cell != "(required)":
                wrong.append((row[0], cell))
            continue
        if cell.startswith("the "):
            continue  # the topology's value (a queue's, the schedule's, a function's timeout): the stack sets it
        shown = cell.split(", ")  # thousands separators have no space
        if len(shown) != len(variables) or any(
            not any(text in renderings(defaults[name][1]) for text in (written, written.split(" (")[0]))
            for name, written in zip(variables, shown, strict=False)
        ):
            wrong.append((row[0], cell))
    assert wrong == []


def test_the_deployment_guide_lists_every_parameter() -> None:
    cells = [row[0] for row in rows((ROOT / "docs" / "deployment.md").read_text(encoding="utf-8"), "## Parameters")]
    listed = {key for cell in cells for key in re.findall(r"`([a-z][A-Za-z]+)`", cell)}
    keys = {DeploymentConfig.variable(field).split()[0] for field in DeploymentConfig.model_fields}  # camelCase
    assert keys <= listed
