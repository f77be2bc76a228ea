"""The agents' tests use the rail's fixtures: scripted servers and short timeouts."""

from tests.orchestrator.conftest import external, ollama, openai, rail_settings  # noqa: F401
