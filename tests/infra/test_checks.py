"""cdk-nag's AWS Solutions checks find nothing unacknowledged, every acknowledgment answers a real finding with a
reason, and cfn-lint passes on the synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import Validations

from infra.application import ROOT, create_app

MIN_REASON = 30  # characters: a reason, not a shrug


def test_cdk_nag_reports_nothing(synthesized):
    assert synthesized.validation_report()["pluginReports"] == []


def test_every_acknowledgment_answers_a_finding_with_a_reason(dependencies, tmp_path, monkeypatch):
    acknowledged = []  # (scope path, rule id, reason)
    real_of = Validations.of

    class Recorder:
        """Validations.of(scope) that records acknowledgments instead of applying them."""

        def __init__(self, scope):
            self.scope = scope

        def acknowledge(self, *rules):
            acknowledged.extend((self.scope.node.path, rule.id, rule.reason) for rule in rules)

        def add_plugins(self, *plugins):
            real_of(self.scope).add_plugins(*plugins)

    monkeypatch.setattr(Validations, "of", Recorder)
    app, _ = create_app(dependencies=dependencies, outdir=str(tmp_path), environ={})
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {
        (construct["constructPath"], violation["ruleName"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    }

    def answers(acknowledgment, finding):
        (scope, rule, _), (path, name) = acknowledgment, finding
        return rule == name and (path == scope or path.startswith(f"{scope}/"))

    assert findings
    assert [f for f in sorted(findings) if not any(answers(a, f) for a in acknowledged)] == []
    assert [a for a in acknowledged if not any(answers(a, f) for f in findings)] == []
    assert [a for a in acknowledged if len(a[2]) < MIN_REASON] == []


def test_cfn_lint_passes_on_the_template(synthesized):
    template = synthesized.outdir / f"{synthesized.stack.artifact_id}.template.json"
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    completed = subprocess.run(
        [str(cfn_lint), "--config-file", str(ROOT / "infra" / "cfn-lint.yaml"), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
