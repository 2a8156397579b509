"""cmdliner's habits on every console script: --version, --help[=FMT], -v/-q/--verbosity,
--color, completion, man pages, option help, hidden old spellings, lazy start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from client.cli import COMMANDS, alba
from cmdline import PROTOCOL_VERSION, VERSION, LazyGroup
from cmdline.manpage import CONSOLE_SCRIPTS, load_script, walk
from cmdline.manpage import main as manpages_main
from core.wire.messages import VERSION as WIRE_VERSION

VERSION_LINE = "version 0.1.0 protocol version 5\n"
BIN = Path(sys.executable).parent


def every_command() -> Iterator[tuple[str, list[str], click.Command]]:
    """(script, argv to reach the command, command) for every command of every script."""
    for script in CONSOLE_SCRIPTS:
        root = click.Context(load_script(script), info_name=script)
        for ctx in walk(root):
            path = ctx.command_path.split()[1:]
            yield script, path, ctx.command


ALL = list(every_command())
IDS = [" ".join([s, *p]) for s, p, _ in ALL]


def test_the_version_constants_are_the_package_and_wire_versions() -> None:
    assert distribution("albatross-gateway").version == VERSION
    assert PROTOCOL_VERSION == WIRE_VERSION


def test_the_console_scripts_are_the_ones_installed() -> None:
    installed = {
        e.name
        for e in distribution("albatross-gateway").entry_points
        if e.group == "console_scripts"
    }
    assert installed == set(CONSOLE_SCRIPTS)


@pytest.mark.parametrize(("script", "path", "command"), ALL, ids=IDS)
def test_every_command_answers_version(
    script: str, path: list[str], command: click.Command
) -> None:
    result = CliRunner().invoke(load_script(script), [*path, "--version"], prog_name=script)
    assert (result.exit_code, result.stdout) == (0, VERSION_LINE)


@pytest.mark.parametrize(("script", "path", "command"), ALL, ids=IDS)
def test_every_command_takes_the_common_options(
    script: str, path: list[str], command: click.Command
) -> None:
    args = [*path, "--color=never", "--verbosity=debug", "-v", "-q", "--help=plain"]
    result = CliRunner().invoke(load_script(script), args, prog_name=script)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {' '.join([script, *path])} ")


@pytest.mark.parametrize(("script", "path", "command"), ALL, ids=IDS)
def test_every_option_has_help(script: str, path: list[str], command: click.Command) -> None:
    missing = [
        p.opts[0]
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize(("script", "path", "command"), ALL, ids=IDS)
def test_help_shows_no_rst_literals(script: str, path: list[str], command: click.Command) -> None:
    result = CliRunner().invoke(load_script(script), [*path, "--help"], prog_name=script)
    assert "``" not in result.stdout


def test_help_groff_is_a_man_page() -> None:
    result = CliRunner().invoke(alba, ["info", "--help=groff"], prog_name="alba")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        '.TH "ALBA-INFO" "1" "" "albatross-gateway" "alba info"',
        ".SH NAME",
        "alba\\-info \\- Show information about unikernels.",
        ".SH SYNOPSIS",
        ".B alba info",
        "[OPTIONS]",
    ]
    assert ".TP\n\\fB\\-n, \\-\\-name NAME\\fR\nName of unikernel." in result.stdout


def test_help_takes_only_cmdliner_formats() -> None:
    result = CliRunner().invoke(alba, ["info", "--help=html"], prog_name="alba")
    assert result.exit_code == 124
    assert "option '--help': invalid value 'html', expected one of 'auto', 'pager', " in (
        result.stderr
    )


def test_help_needs_its_value_glued_like_cmdliner() -> None:
    # `--help info` is the group's help, not a format called "info"
    result = CliRunner().invoke(alba, ["--help", "info"], prog_name="alba")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: alba [OPTIONS] COMMAND [ARGS]...")


def test_the_lazy_table_shows_each_commands_own_help() -> None:
    assert isinstance(alba, LazyGroup)
    ctx = click.Context(alba, info_name="alba")
    for name, (_, text) in COMMANDS.items():
        command = alba.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(45) == click.Command(name, help=text).get_short_help_str(
            45
        ), name


def test_manpages_for_every_command(tmp_path: Path) -> None:
    assert manpages_main([str(tmp_path)]) == 0
    pages = sorted(p.name for p in tmp_path.iterdir())
    assert len(pages) == len(ALL)
    assert "alba-ca-crl.1" in pages and "albatross-client-info.1" in pages
    assert (
        (tmp_path / "albatross-audit-verify.1")
        .read_text()
        .startswith('.TH "ALBATROSS-AUDIT-VERIFY" "1"')
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script(shell: str) -> None:
    result = CliRunner().invoke(alba, ["completion", shell], prog_name="albatross-client")
    assert result.exit_code == 0
    assert "_ALBATROSS_CLIENT_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout or f"{shell}_source" in result.stdout


@pytest.mark.parametrize(
    ("args", "old", "new"),
    [
        (["ca", "crl"], "--cakey", "--ca-key"),
        (["ca", "crl"], "--cacert", "--ca"),
        (["ca", "revoke"], "--cacert", "--ca"),
        (["ca", "crl-leaf"], "--cakey", "--ca-key"),
        (["ca", "delegate"], "--endpoint", "--destination"),
        (["explain"], "--memory", "--mem"),
        (["explain"], "--cpuid", "--cpu"),
    ],
)
def test_old_spellings_work_but_are_not_shown(args: list[str], old: str, new: str) -> None:
    ctx = click.Context(alba, info_name="alba")
    command: click.Command | None = alba
    for name in args:
        assert isinstance(command, click.Group)
        ctx = click.Context(command.get_command(ctx, name), info_name=name, parent=ctx)  # type: ignore[arg-type]
        command = ctx.command
    assert command is not None
    option = next(p for p in command.params if old in p.opts)
    assert new in option.opts
    help_text = CliRunner().invoke(alba, [*args, "--help"]).stdout
    assert new in help_text and f"{old} " not in help_text and f"{old}," not in help_text


def test_explain_takes_albas_command_names_and_the_old_ones() -> None:
    runner = CliRunner()
    for what in ("create-block", "block-add"):
        result = runner.invoke(alba, ["explain", "--command", what])
        assert "give a CHAIN_FILE, --bundle or --remote" in result.stderr, what
    result = runner.invoke(alba, ["explain", "--help"])
    assert "block-add" not in result.stdout


def _imports_after(
    args: list[str], env: dict[str, str] | None = None, entry: str = "client.cli"
) -> list[str]:
    code = (
        "import sys\n"
        f"from {entry} import main\n"
        f"sys.argv = {['alba', *args]!r}\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('trio', 'cryptography', 'OpenSSL', 'core.wire')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return done.stderr.strip().splitlines()[-1:]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["--help=groff"]])
def test_start_up_imports_no_trio_nor_cryptography(args: list[str]) -> None:
    assert _imports_after(args) == ["[]"]


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_inspect_start_up_imports_no_cryptography(args: list[str]) -> None:
    assert _imports_after(args, entry="client.inspect_cli") == ["[]"]


def test_tab_completion_imports_no_trio_nor_cryptography() -> None:
    env = {"_ALBA_COMPLETE": "bash_complete", "COMP_WORDS": "alba in", "COMP_CWORD": "1"}
    assert _imports_after([], env) == ["[]"]


def test_installed_scripts_print_the_version() -> None:
    for script in ("alba", "albatross-client", "albatross-inspect", "albatross-tls-endpoint"):
        done = subprocess.run(
            [str(BIN / script), "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, VERSION_LINE), script


def test_tab_completion_lists_commands_from_the_table() -> None:
    env = {
        **os.environ,
        "_ALBA_COMPLETE": "bash_complete",
        "COMP_WORDS": "alba cre",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(
        [str(BIN / "alba")], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.stdout == "plain,create\nplain,create-block\n"


def test_the_files_generate_wrote_are_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(alba, ["generate", "myca", "db.txt"]).exit_code == 0
    result = runner.invoke(alba, ["info", "-d", "127.0.0.1:1"], prog_name="alba")
    assert result.exit_code == 124
    assert " ".join(result.stderr.split()) == (
        "alba: CA certificate ca.pem does not exist; `alba generate` wrote cacert.pem and"
        " myca.key here: pass --ca cacert.pem --ca-key myca.key"
    )


@pytest.mark.parametrize(
    ("args", "default", "level"),
    [
        ([], "warning", "warning"),
        (["-v"], "warning", "info"),
        (["-v", "sub", "-v"], "warning", "debug"),  # the group's and the command's count
        (["-vvv"], "warning", "debug"),
        (["-v"], "info", "debug"),  # one step above the command's own default
        (["--verbosity=error", "sub", "-v"], "warning", "error"),  # --verbosity over -v
        (["sub", "-q", "--verbosity=debug"], "warning", "quiet"),  # -q over both
        (["--color=never", "sub"], "warning", "warning"),
    ],
)
def test_log_level_follows_logs_cli(args: list[str], default: str, level: str) -> None:
    from cmdline import Group, log_level

    seen: list[tuple[str, bool | None]] = []

    @click.group(cls=Group)
    def root() -> None:
        pass

    @root.command("sub")
    @click.pass_context
    def sub(ctx: click.Context) -> None:
        seen.append((log_level(ctx, default), ctx.color))

    full = args if "sub" in args else [*args, "sub"]
    result = CliRunner().invoke(root, full)
    assert result.exit_code == 0, result.output
    assert seen == [(level, False if "--color=never" in args else None)]
