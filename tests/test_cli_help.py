"""Every command's help, walked: it renders, shows every help text whole, and names only real commands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from tradebus.cli import app

runner = CliRunner()
_BOX = re.compile(r"[│╭╮╰╯─]+")
#: ``tradebus word word ...`` in a help text, or a hyphenated command-like word (``live-resume``).
_MENTION = re.compile(r"\btradebus((?: [a-z][a-z0-9-]*)+)")


def command_paths(application: typer.Typer) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(path, click command)`` of every command and group of ``application``, the root first."""
    root = get_command(application)

    def walk(command: Any, path: tuple[str, ...], ctx: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, command
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                yield from walk(sub, (*path, name), type(ctx)(sub, parent=ctx, info_name=name))

    yield from walk(root, (), root.context_class(root, info_name="tradebus"))


def _flat(text: str) -> str:
    return " ".join(_BOX.sub(" ", text).split())


def help_problems(application: typer.Typer) -> list[str]:
    """What is wrong with the help of every command of ``application`` (empty: nothing)."""
    commands = dict(command_paths(application))
    names = {" ".join(path) for path in commands}
    problems = []
    for path, command in commands.items():
        where = " ".join(("tradebus", *path))
        result = runner.invoke(application, [*path, "--help"], env={"COLUMNS": "100"})
        if result.exit_code != 0:
            problems.append(f"{where} --help: exit {result.exit_code}")
            continue
        shown = _flat(result.output)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in filter(None, texts):
            # rich markup eats "[default: x]" written into a help text and leaves "Output directory ."
            if _flat(text.split("\n\n")[0]) not in shown:
                problems.append(f"{where} --help: {text.split(chr(10))[0]!r} is not shown whole")
            for mention in _MENTION.finditer(text):
                words = mention.group(1).split()
                if not any(" ".join(words[:n]) in names for n in range(1, len(words) + 1)):
                    problems.append(f"{where} --help: names {mention.group(0)!r}, which is no command")
        for paragraph in (command.help or "").split("\n\n")[1:]:
            # rich keeps a line break inside a paragraph: the text shows cut mid-sentence
            if "\n" in paragraph.strip():
                problems.append(f"{where} --help: a paragraph breaks its lines: {paragraph.strip()[:50]!r}")
        if "<bool>" in result.output:
            problems.append(f"{where} --help: shows a <bool> placeholder")
        if re.search(r"\w \.(\s|$)", shown):
            problems.append(f"{where} --help: a stray period in {shown[max(shown.find(' .') - 40, 0):][:60]!r}")
    return problems


def test_every_command_help_renders_whole_and_names_only_real_commands() -> None:
    paths = {" ".join(path) for path, _ in command_paths(app)}
    assert {"backtest", "paper", "replay", "serve", "live", "report", "sweep", "data import", "features list"} <= paths
    assert help_problems(app) == []


def test_the_help_check_sees_eaten_text_missing_commands_and_stray_periods() -> None:
    sample = typer.Typer(add_completion=False)

    @sample.command()
    def run(
        out: str = typer.Option("x", help="Output directory [default: runs/<stem>]."),
        flag: bool = typer.Option(False, help="See `tradebus run` and tradebus nothing here."),
    ) -> None:
        """Run it."""

    @sample.command()
    def other() -> None:
        """Another.

        A paragraph written on
        two lines.
        """

    problems = help_problems(sample)
    assert any("'Output directory [default: runs/<stem>].' is not shown whole" in p for p in problems), problems
    assert any("names 'tradebus nothing here'" in p for p in problems), problems
    assert not any("'tradebus run'" in p for p in problems), problems
    assert any("stray period" in p for p in problems), problems
    assert any("other --help: a paragraph breaks its lines" in p for p in problems), problems


@pytest.mark.parametrize("command", [["replay"], ["backtest"], ["research", "dataset"], ["data", "quality"], ["report"]])
def test_output_defaults_are_shown(command: list[str]) -> None:
    output = _flat(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"}).output)
    assert "[default: (" in output and " ." not in output


def test_report_help_names_the_default_of_out_for_a_run_and_for_compare() -> None:
    """``tradebus report --help`` showed ``--out  Where to write the page.`` and no default for either form."""
    output = _flat(runner.invoke(app, ["report", "--help"], env={"COLUMNS": "200"}).output)
    assert "[default: (RUN_DIR/tearsheet.html; compare: compare-<A>-vs-<B>.html in the current directory)]" in output, output


def test_live_help_names_the_key_variables_of_every_live_venue() -> None:
    from tradebus.adapters.registry import VENUES

    output = _flat(runner.invoke(app, ["live", "--help"], env={"COLUMNS": "100"}).output)
    assert "TRADEBUS_<VENUE>_API_KEY" in output and "_API_SECRET" in output
    venues = output.split("VENUE one of")[1]
    for adapter in VENUES.values():
        if adapter.live is not None:
            assert adapter.name.upper() in venues, adapter.name
            if adapter.live.passphrase:
                assert f"{adapter.name.upper()}: and _API_PASSPHRASE" in output


def test_the_cli_runs_in_a_thread_other_than_the_main_one() -> None:
    """Its SIGTERM handler is set from the main thread only (signal.signal raises ValueError elsewhere)."""
    import threading

    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(runner.invoke(app, ["features", "list"])))
    thread.start()
    thread.join()
    assert results[0].exit_code == 0, results[0].exception


@pytest.mark.parametrize("path", [("backtest",), ("data",)])
def test_a_log_level_option_lists_every_level_it_takes(path: tuple[str, ...]) -> None:
    """``tradebus data --help`` listed DEBUG, INFO, WARNING, ERROR while TRACE, SUCCESS and CRITICAL worked too."""
    from tradebus.ops.logs import LOG_LEVELS

    [option] = [p for p in dict(command_paths(app))[path].params if "--log-level" in getattr(p, "opts", ())]
    assert option.help == f"Log level on stderr: {', '.join(LOG_LEVELS)}."


@pytest.mark.parametrize("command", ["paper", "live"])
def test_a_daemon_out_help_says_which_files_are_streamed_while_it_runs(command: str) -> None:
    """``paper --help``/``live --help`` said the outputs were written on shutdown, while fills, orders,
    equity, funding and prices are streamed row by row as the daemon runs (``reports/stream.py``)."""
    from tradebus.reports.writers import STREAMED_FILES

    [option] = [p for p in dict(command_paths(app))[(command,)].params if "--out" in getattr(p, "opts", ())]
    assert "on shutdown" not in option.help
    assert "while the daemon runs" in option.help
    for name in STREAMED_FILES:
        assert Path(name).stem in option.help, name


def test_import_recording_help_says_what_a_backtest_refuses_and_the_keys_that_allow_it() -> None:
    """``data import-recording --help`` said nothing of the stretches and gaps it stores in the manifests,
    which a backtest refuses unless ``data.allow_stale`` / ``data.allow_missed_trades``."""
    output = _flat(runner.invoke(app, ["data", "import-recording", "--help"], env={"COLUMNS": "100"}).output)
    for word in ("unsynced", "stale", "missed_trades", "data.allow_stale", "data.allow_missed_trades", "tradebus data info"):
        assert word in output, word


def test_serve_help_says_a_connection_starts_where_the_stream_is() -> None:
    """``serve --help`` said the recording was streamed once to each connection, while the server holds one
    cursor: a connection starts there (``LocalVenueServer``), and it said the last 50 frames came again."""
    output = _flat(runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "100"}).output)
    assert "to each connection" not in output
    assert "a connection starts where the stream is, after the frames sent to the connections before it" in output
    assert "frames again" not in output
    assert "at the venue's now" in output  # paced: one clock, not restarted by a reconnect
