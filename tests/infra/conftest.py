"""Synthesize the app as app.py does (cdk.json's flags, cdk-nag), offline: the dependencies layer is a tiny stand-in
so no wheel is downloaded; tests/infra/test_layers.py checks the real build."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from infra.application import create_app
from infra.layers import BuiltLayer
from infra.stack import ImageProcessingStack
from infra.topology import TOPOLOGY, Topology


@dataclass(frozen=True)
class Synthesized:
    stack: ImageProcessingStack
    outdir: Path
    template: Template
    resources: dict[str, dict[str, Any]]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def function_id(self, name: str) -> str:
        """The logical id of the topology function `name`."""
        return self.stack.get_logical_id(
            self.stack.node.find_child("Functions").node.find_child(name.capitalize()).node.default_child
        )

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


@pytest.fixture(scope="session")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> BuiltLayer:
    root = tmp_path_factory.mktemp("dependencies-layer")
    (root / "python").mkdir()
    (root / "python" / "stand_in.py").write_text("# the real layer is built by infra/layers.py\n")
    return BuiltLayer(root, "stand-in", 1, ("stand_in",))


Synth = Callable[..., Synthesized]


@pytest.fixture(scope="session")
def synth(dependencies: BuiltLayer, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    def run(
        context: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        topology: Topology = TOPOLOGY,
    ) -> Synthesized:
        outdir = tmp_path_factory.mktemp("cdk.out")
        app, stack = create_app(
            dependencies=dependencies, outdir=str(outdir), context=context, topology=topology, environ=environ or {}
        )
        app.synth()  # raises if cdk-nag reports anything not acknowledged
        template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
        return Synthesized(stack, outdir, Template.from_json(template), template["Resources"])

    return run


@pytest.fixture(scope="session")
def synthesized(synth: Synth) -> Synthesized:
    """The stack with no parameters given: what `make synth` deploys by default."""
    return synth()


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template
