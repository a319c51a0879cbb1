"""The local cloud's environment set-up hook for tests/integration/test_function_environments.py: each execution
environment writes what it was given (its whole os.environ) where PROBE_VARIABLE says, one file per environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

PROBE_VARIABLE = "IPS_TEST_ENVIRONMENT_PROBE"


def record(handler_module: ModuleType) -> None:
    function = handler_module.__name__.split(".")[1]  # functions.<name>.handler
    folder = Path(os.environ[PROBE_VARIABLE])
    (folder / f"{function}-{os.getpid()}.json").write_text(json.dumps(dict(os.environ)))
