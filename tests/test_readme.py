"""Every command the README shows runs as written: the quick ones are run here in a scratch folder, the others are
parsed by the real parsers (the demo runs in tests/test_demo.py)."""

import os
import re
import shlex
from pathlib import Path

import pytest

from causaldiff.cli import TRAINING, build_parser, main

README = Path(__file__).parent.parent / "README.md"
RUN = ("models", "data make", "grid")  # run as written; the rest would take minutes to hours


def readme_commands() -> list[list[str]]:
    """Every ``causaldiff ...`` command of the README, in code blocks and in backticks, as argv without the program."""
    text = README.read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))
    found = re.findall(r"^causaldiff [^\n]*", blocks, re.M) + re.findall(r"`(causaldiff [^`]*)`", text)
    return [shlex.split(c.split("  #")[0])[1:] for c in dict.fromkeys(found)]


def test_the_readme_shows_every_command():
    shown = {argv[0] for argv in readme_commands()}
    assert shown >= {"models", "grid", "counterfactual", "augment", "evaluate", "data", "fit", "fit-predictor",
                     "test", "demo"}


def test_every_readme_command_parses(capsys):
    from causaldiff.training.cli import run_lightning_cli

    for argv in readme_commands():
        if argv[0] in TRAINING:  # LightningCLI checks the config and every option, then stops
            with pytest.raises(SystemExit) as done:
                run_lightning_cli([*argv, "--print_config"])
            assert done.value.code in (0, None), argv
        else:
            build_parser().parse_args(argv)
    capsys.readouterr()


@pytest.mark.slow
def test_the_quick_readme_commands_run_as_written(tmp_path, capsys):
    commands = {" ".join(argv[:2]) if argv[0] == "data" else argv[0]: argv for argv in readme_commands()}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for name in RUN:
            main(commands[name])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "brain32" in out and "recommends (used unless given)" in out
    assert len((tmp_path / "data" / "brain" / "labels.csv").read_text().splitlines()) == 2001
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "grid.csv").is_file()


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(code) == 1
    scope: dict = {}
    exec(code[0], scope)  # noqa: S102 - the README's own example
    assert scope["out"].cf_x.shape == scope["cf_x"].shape == (8, 3, 32, 32) and len(scope["grid"]) == 2
