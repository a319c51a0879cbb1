#!/usr/bin/env python3
"""CDK app: `make synth` (offline) writes the CloudFormation template to cdk.out/."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "layers" / "domain" / "python"))

import aws_cdk as cdk

from infra.stack import ImageProcessingStack

# The CDK CLI passes CDK_OUTDIR; `make synth` runs this file directly (no CLI, offline) into cdk.out/.
app = cdk.App(outdir=os.environ.get("CDK_OUTDIR", "cdk.out"))
ImageProcessingStack(app, app.node.try_get_context("stackName") or "ImageProcessingSystem")
app.synth()
