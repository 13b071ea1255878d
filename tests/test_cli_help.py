"""Every command and every option of the CLI explains itself in --help (issue 11)."""

import click
import pytest
from click.testing import CliRunner

from netspec.cli import main


def _commands(cmd, path=("netspec",)):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, path + (name,))


COMMANDS = list(_commands(main))


def test_the_tree_is_walked():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"netspec check", "netspec train", "netspec compile", "netspec evaluate"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_option_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no description"
    missing = [p.opts[0] for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, f"{' '.join(path)}: options without help: {', '.join(missing)}"


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_prints(path, cmd):
    r = CliRunner().invoke(main, [*path[1:], "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output
