"""``meisa-sync serve``: run the reference Meisa server with uvicorn (CONTRACT.md §9)."""

from __future__ import annotations

import logging

import click

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--database-url",
    default="sqlite:///meisa-server.db",
    show_default=True,
    envvar="MEISA_SERVER_DATABASE_URL",
    help="SQLAlchemy URL: SQLite (default), PostgreSQL or MariaDB/MySQL.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file with keys, users, sequences and automations, applied at start.",
)
@click.option(
    "--control-plane/--no-control-plane",
    default=False,
    show_default=True,
    help="Serve /_meisa/ (reset, chaos, request log). For tests and demos only.",
)
@click.option(
    "--request-log-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="How many requests the control plane's log keeps.",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate (chain): serve HTTPS, as Meisa does.",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key, when it is not in --ssl-certfile.",
)
def serve(
    host: str,
    port: int,
    database_url: str,
    config_path: str | None,
    control_plane: bool,
    request_log_size: int,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Run the reference Meisa server (one process: the rate limiter lives in it)."""
    try:
        import uvicorn

        from meisa_sync.server import create_app
        from meisa_sync.server.control import DropFilter
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise click.ClickException(
            f"the server needs the 'server' extra ({exc.name} is missing): "
            "pip install 'meisa-sync[server]'"
        ) from None
    from meisa_sync.exceptions import ConfigurationError

    if ssl_keyfile is not None and ssl_certfile is None:
        raise click.UsageError("--ssl-keyfile needs --ssl-certfile (the certificate it belongs to)")
    try:
        app = create_app(
            database_url,
            config=config_path,
            control_plane=control_plane,
            request_log_size=request_log_size,
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    root = f"{'https' if ssl_certfile else 'http'}://{host}:{port}"
    click.echo(f"Meisa reference server on {root}/api/v1/ ({database_url})")
    if control_plane:
        click.echo(f"control plane on: {root}/_meisa/")
    # One worker: the rate limiter and the control plane's state live in this process.
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        log_level="info",
        ws="none",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
