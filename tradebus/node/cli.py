"""``tradebus live CONFIG``: the live-trading daemon's command (registered in :mod:`tradebus.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["DaemonOut", "live", "live_kill", "live_resume"]

#: ``--out`` of ``tradebus paper`` and ``tradebus live``.
DaemonOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Output directory: fills, orders, equity, funding and prices are written row by row while the daemon "
        "runs, the other outputs when it stops.",
    ),
]


def live(
    config: Annotated[Path, typer.Argument(help="YAML live config (a paper config plus a live: section).", show_default=False)],
    out: DaemonOut = None,
    mainnet: Annotated[
        bool, typer.Option("--mainnet", help="Trade real money: also needs live.environment: mainnet in the config.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Connect, reconcile and decide; send no order.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into an --out directory holding other files.")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds of running, counted from the feeds' start (after the warm-up, which compiles the feature kernels on a cold cache, and a live daemon's account read).")] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after this many market-data messages.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value (repeatable).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level on stderr.")] = "INFO",
) -> None:
    """Trade live (testnet by default) until SIGINT/SIGTERM.

    Keys from TRADEBUS_<VENUE>_API_KEY, _API_SECRET (OKX: and _API_PASSPHRASE), VENUE one of BINANCE, OKX, BYBIT.
    """
    from tradebus.node.starting import StartingSignals

    with StartingSignals() as starting:  # a stop asked for while the daemon's modules load is its stop
        from tradebus.cli import _fail, check_log_level, setup_logging
        from tradebus.errors import TradebusError
        from tradebus.node.live import run_live

        setup_logging(check_log_level(log_level), "{time:HH:mm:ss.SSS} {level} {message}")
        try:
            run_live(
                config,
                out,
                mainnet=mainnet,
                dry_run=dry_run,
                max_seconds=max_seconds,
                max_messages=max_messages,
                force=force,
                overrides=set_ or (),
                starting=starting,
            )
        except TradebusError as exc:
            _fail(exc, Console(stderr=True))


def live_kill(
    config: Annotated[Path, typer.Argument(help="The live config of the account.", show_default=False)],
    mainnet: Annotated[bool, typer.Option("--mainnet", help="The config's account is on mainnet.")] = False,
    reason: Annotated[str, typer.Option(help=(
        "Why (kept in the journal; with --flatten, the closing orders' reason in orders.csv and fills.csv: flatten (REASON))."
    ))] = "kill switch",
    flatten: Annotated[bool, typer.Option("--flatten", help=(
        "Also close every position the journal holds at market: sell a holding or a long, buy back a short (reduce-only)."
    ))] = False,
) -> None:
    """Cancel every open order of the account's instruments (optionally flatten) and leave the journal HALTED until live-resume.

    Exits 0 once no order is open, 4 when orders are left open or of unknown state at the venue (named).

    Without a journal in the config nothing is halted (it says so); with one it is HALTED even on exit 4.
    """
    import asyncio

    from tradebus.cli import _fail, setup_logging
    from tradebus.errors import TradebusError
    from tradebus.node.live import ApiKeys, check_environment, kill_switch, load_live_config

    setup_logging("WARNING")
    try:
        cfg = load_live_config(config)
        check_environment(cfg.live, mainnet)
        canceled = asyncio.run(kill_switch(cfg, ApiKeys.from_env(cfg.live), reason, flatten=flatten))
    except TradebusError as exc:
        _fail(exc, Console(stderr=True))
    if cfg.journal is None:
        Console().print(f"canceled {len(canceled)} order(s); the config has no journal: no trading state stored (a daemon "
                        "on this config is not halted)", soft_wrap=True, highlight=False, markup=False)
    else:
        Console().print(f"canceled {len(canceled)} order(s); trading HALTED in {cfg.journal} until `tradebus live-resume`",
                        soft_wrap=True, highlight=False, markup=False)


def live_resume(
    config: Annotated[Path, typer.Argument(help="The live config of the account.", show_default=False)],
    mainnet: Annotated[bool, typer.Option("--mainnet", help="The config's account is on mainnet.")] = False,
) -> None:
    """Set the journal's trading state back to ACTIVE after a kill (the breakers keep their memory).

    A journal that names its venue account is refused to keys of another (read from the venue, keys as for live).
    """
    from tradebus.cli import _fail
    from tradebus.errors import TradebusError
    from tradebus.node.live import check_environment, load_live_config, resume_trading

    try:
        cfg = load_live_config(config)
        check_environment(cfg.live, mainnet)
        resume_trading(cfg)
    except TradebusError as exc:
        _fail(exc, Console(stderr=True))
    Console().print(f"trading ACTIVE in {cfg.journal}", soft_wrap=True, highlight=False, markup=False)
