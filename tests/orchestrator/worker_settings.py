"""Settings of worker subprocesses started by the reliability tests: the project's settings plus
the test's overrides, given as JSON in TRILHO_TEST_OVERRIDES."""

import json
import os

from orchestrator.settings import *  # noqa: F403

globals().update(json.loads(os.environ.get("TRILHO_TEST_OVERRIDES", "{}")))
