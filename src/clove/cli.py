"""The `clove` command: init, serve, seed, db upgrade, apikey create, oauth-app create."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine, func, select

from clove.bulk_action.cli import bulk_app
from clove.config import get_settings
from clove.connected_account.cli import account_app
from clove.db import make_engine, make_session_factory

app = typer.Typer(
    help="Clove: a self-hosted server for the Close CRM REST API.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
oauth_app = typer.Typer(help="OAuth2 applications.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(oauth_app, name="oauth-app")
app.add_typer(account_app, name="account")
app.add_typer(bulk_app, name="bulk")

err = Console(stderr=True)
out = Console(soft_wrap=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="CLOVE_DATABASE_URL",
        help="SQLAlchemy URL; default sqlite:///./clove.db",
    ),
]


def _ensure_secret_key() -> None:
    """Creates the key that encrypts stored passwords, once, when none is configured."""
    from clove.kit.secrets import ensure_key_file

    created = ensure_key_file(get_settings())
    if created:
        err.print(
            f"Created {created} (the key for stored SMTP passwords). Keep it with the database;"
            " every Clove process needs the same key (or set CLOVE_SECRET_KEY)."
        )


def _engine(database_url: str | None) -> Engine:
    """An engine on the chosen database, migrated to the newest schema."""
    from clove.migrate import upgrade

    url = database_url or get_settings().database_url
    os.environ["CLOVE_DATABASE_URL"] = url  # workers and the app read the same database
    get_settings.cache_clear()
    engine = make_engine(url)
    try:
        upgrade(engine)
    except Exception as exc:  # connection refused, bad URL, permissions
        err.print(f"[red]Cannot prepare the database at {url!r}:[/red] {exc}")
        err.print("Check --database-url (or CLOVE_DATABASE_URL) and that the server is running.")
        raise typer.Exit(2) from None
    return engine


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the schema to the newest version."""
    _engine(database_url)
    err.print("[green]Database schema is up to date.[/green]")


@app.command()
def init(
    org: Annotated[str, typer.Option("--org", help="Organization name")],
    email: Annotated[str, typer.Option("--email", help="Email of the first (admin) user")],
    first_name: Annotated[str, typer.Option("--first-name")] = "",
    last_name: Annotated[str, typer.Option("--last-name")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create an organization, its first admin and an API key (printed alone on the last line)."""
    from clove.organization.service import create_organization

    if "@" not in email:
        err.print(f"[red]{email!r} is not an email address.[/red]")
        raise typer.Exit(2)
    engine = _engine(database_url)
    _ensure_secret_key()
    with make_session_factory(engine).begin() as session:
        org_row, user, _key, secret = create_organization(
            session, org, email, first_name, last_name
        )
        err.print(f"Organization {org_row.name} ({org_row.id}); admin {user.email} ({user.id})")
    print(secret)


@apikey_app.command("create")
def apikey_create(
    email: Annotated[str, typer.Option("--email", help="The user the key acts as")],
    name: Annotated[str, typer.Option("--name")] = "",
    org_id: Annotated[
        str | None, typer.Option("--org-id", help="Needed if the user has several")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue another API key for a user (printed alone on the last line)."""
    from clove.api_key.service import create_api_key
    from clove.membership.service import active_members_by_email

    engine = _engine(database_url)
    with make_session_factory(engine).begin() as session:
        memberships = active_members_by_email(session, email, org_id)
        if not memberships:
            err.print(
                f"[red]No active member with email {email!r}.[/red] Create one with `clove init`."
            )
            raise typer.Exit(2)
        if len(memberships) > 1:
            orgs = ", ".join(m.organization_id for m in memberships)
            err.print(
                f"[red]{email} belongs to several organizations ({orgs}):[/red] pass --org-id."
            )
            raise typer.Exit(2)
        _key, secret = create_api_key(
            session, memberships[0].organization_id, memberships[0].user_id, name
        )
    print(secret)


@oauth_app.command("create")
def oauth_app_create(
    name: Annotated[str, typer.Option("--name")],
    redirect_uri: Annotated[list[str], typer.Option("--redirect-uri", help="Repeat for several")],
    database_url: DatabaseUrl = None,
) -> None:
    """Register an OAuth2 application; prints its client_id and client_secret (shown once)."""
    from clove.oauth.service import register_app

    engine = _engine(database_url)
    with make_session_factory(engine).begin() as session:
        try:
            client_id, secret = register_app(session, name, redirect_uri)
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    print(f"client_id={client_id}")
    print(f"client_secret={secret}")


@app.command("seed")
def seed_command(
    leads: Annotated[int, typer.Option("--leads", min=1, help="How many leads to create")],
    contacts_per_lead: Annotated[
        int | None,
        typer.Option("--contacts-per-lead", min=0, max=100, help="Exactly K; default 1 to 3"),
    ] = None,
    org_id: Annotated[
        str | None, typer.Option("--org-id", help="Needed if there are several organizations")
    ] = None,
    random_seed: Annotated[int, typer.Option("--seed", help="Same seed, same content")] = 0,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Leads generated and written at a time")
    ] = 20_000,
    database_url: DatabaseUrl = None,
) -> None:
    """Fill an organization with realistic leads, contacts, emails, phones and addresses."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clove.seed import SeedError, resolve_target, seed_organization

    engine = _engine(database_url)
    try:
        target = resolve_target(engine, org_id)
    except SeedError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    err.print(f"Seeding {target.organization_name} ({target.organization_id})")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("leads", total=leads, rate="")
        started = time.perf_counter()

        def advance(done: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:,.0f} leads/s")

        try:
            stats = seed_organization(
                engine,
                target,
                leads,
                contacts_per_lead=contacts_per_lead,
                seed=random_seed,
                chunk_size=chunk_size,
                on_progress=advance,
            )
        except Exception as exc:  # the chunks committed before stay
            progress.stop()
            err.print(
                f"[red]Seeding failed after {progress.tasks[0].completed:,.0f} leads:[/red] {exc}"
            )
            raise typer.Exit(1) from None
    if not stats.foreign_key_checks:
        err.print(
            "Skipped the foreign-key triggers (superuser): the rows are consistent by design."
        )
    print(stats.summary())


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    database_url: DatabaseUrl = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Serve the API only")] = False,
    workers: Annotated[int, typer.Option("--workers", help="API processes")] = 1,
) -> None:
    """Serve the API. On an empty database, first create a demo organization and print its key."""
    import uvicorn

    from clove.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = _engine(database_url)
    _ensure_secret_key()
    base = f"http://{host}:{port}/api/v1/"
    key = _first_run_key(engine)
    out.print(f"Clove is serving the Close API at [bold]{base}[/bold]")
    if key:
        out.print("Created a demo organization with admin admin@example.com. Its API key:")
        out.print(f"  [bold]{key}[/bold]")
        out.print(f"Try: curl -u {key}: {base}me/")
    else:
        out.print("Need a key? clove apikey create --email admin@example.com")
    # Read by the app's settings in each process (the cached ones here were read before).
    os.environ["CLOVE_EMBEDDED_WORKER"] = "0" if no_worker else "1"
    get_settings.cache_clear()
    engine.dispose()
    uvicorn.run(
        "clove.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit")] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Worker threads in this process")
    ] = 1,
) -> None:
    """Run background work (sequence steps, bulk actions, webhooks) until interrupted; scale out by
    starting more. SIGTERM lets each thread finish its current chunk, then exits."""
    import signal
    import threading

    from clove.db import writing_session_factory
    from clove.kit.logging import configure_logging
    from clove.worker.runner import Worker

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    engine = _engine(database_url)
    _ensure_secret_key()
    factory = writing_session_factory(engine)
    runner = Worker(factory, settings)
    if once:
        total = 0
        while done := runner.run_once():
            total += done
        total += runner.webhooks.run_until_idle()
        runner.sequences.close()
        runner.webhooks.close()
        err.print(f"Worked through {total} due item(s).")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    err.print(f"Clove worker running ({concurrency} thread(s)); Ctrl-C stops it.")
    threads = [
        threading.Thread(target=Worker(factory, settings).run, args=(stop,), name=f"worker-{i}")
        for i in range(1, concurrency)
    ]
    for thread in threads:
        thread.start()
    runner.run(stop)
    for thread in threads:
        thread.join()


def _first_run_key(engine: Engine) -> str | None:
    """The key of a new demo organization if the database has none, else None."""
    from clove.models import Organization
    from clove.organization.service import create_organization

    with make_session_factory(engine).begin() as session:
        if session.scalar(select(func.count()).select_from(Organization)):
            return None
        _org, _user, _key, secret = create_organization(
            session, "Demo Organization", "admin@example.com", "Demo", "Admin"
        )
        return secret


def main() -> None:
    app()
