"""The CDK app as app.py runs it and the tests check it: cdk.json's context (feature flags) as defaults, the
deployment parameters, the stack, and cdk-nag's AWS Solutions checks as a validation plugin.

The CLI (`cdk synth`/`deploy`) passes cdk.json and `-c` context through the environment, which overrides the
defaults given here; `python app.py` (`make synth`, no CLI) gets the same flags from this file's copy."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import DeploymentConfig
from infra.layers import BuiltLayer
from infra.stack import ImageProcessingStack
from infra.topology import TOPOLOGY, Topology

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STACK_NAME = "ImageProcessingSystem"


def cdk_json_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def create_app(
    *,
    dependencies: BuiltLayer,
    outdir: str | None = None,
    context: Mapping[str, Any] | None = None,
    topology: Topology = TOPOLOGY,
    environ: Mapping[str, str] = os.environ,
) -> tuple[App, ImageProcessingStack]:
    app = App(outdir=outdir, context={**cdk_json_context(), **(context or {})})
    config = DeploymentConfig.from_context(app.node.try_get_context, environ)
    stack = ImageProcessingStack(
        app,
        app.node.try_get_context("stackName") or DEFAULT_STACK_NAME,
        dependencies=dependencies,
        config=config,
        topology=topology,
        description="Image Processing System: CSV in, compressed images and a signed webhook out",
    )
    # Every finding fails the synth unless it is acknowledged with a reason where the resource is made.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))
    return app, stack
