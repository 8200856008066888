"""The README's two fresh-machine commands are what CI runs."""

from tests.conftest import REPO


def _commands():
    lines = (REPO / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:20] if line.strip().startswith("python3 -m venv")]


def test_readme_opens_with_exactly_two_commands():
    commands = _commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.endswith("xai-jax explain")
    assert "pytest" in tests and '".[test]"' in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text()
    assert _commands()[1] in ci.splitlines()
