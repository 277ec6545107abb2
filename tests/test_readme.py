"""README.md promises exactly two commands; CI must run the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)


def test_readme_gives_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "build.py" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_readme_options_exist_in_the_cli():
    import build

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build.parse_args(["--help"])
    documented = set(re.findall(r"`(--[a-z-]+)", (ROOT / "README.md").read_text()))
    assert documented, "README documents no option"
    for option in documented:
        assert option in out.getvalue(), f"README documents {option}, build.py lacks it"
