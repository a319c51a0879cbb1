#!/usr/bin/env python3
"""CDK app: `make synth` (offline) writes the CloudFormation template to cdk.out/; `npx aws-cdk@2 deploy` deploys it.

Builds (or reuses) the dependencies layer first: see infra/layers.py."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "layers" / "domain" / "python"))

from infra.application import create_app
from infra.layers import build_dependencies_layer

dependencies = build_dependencies_layer()
# The CDK CLI passes CDK_OUTDIR; `make synth` runs this file directly (no CLI, offline) into cdk.out/.
app, _ = create_app(dependencies=dependencies, outdir=os.environ.get("CDK_OUTDIR", "cdk.out"))
app.synth()
