"""`clove bulk watch ID`: a live progress bar of a bulk action until it ends."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from clove.connected_account.cli import DatabaseUrl, fail
from clove.db import make_engine, make_session_factory
from clove.models import BulkAction

bulk_app = typer.Typer(help="Bulk actions.", no_args_is_help=True)
err = Console(stderr=True)
ENDED = ("done", "error")


@bulk_app.command("watch")
def watch(
    action_id: Annotated[str, typer.Argument(help="The bulk action's id (bulkseqsub_..., ...)")],
    database_url: DatabaseUrl = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between looks")
    ] = (0.5),
) -> None:
    """Show a bulk action's progress until it is done (or ends in error)."""
    factory = make_session_factory(make_engine(database_url or "sqlite:///./clove.db"))
    action = _read(factory, action_id)
    if action is None:
        raise fail(f"No bulk action {action_id}.", "Check the id (GET /bulk_action/<kind>/).")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task(action_id, total=None, detail="")
        while True:
            bar.update(
                task,
                description=f"{action.kind} {action.status}",
                completed=action.n_leads_processed,
                total=action.n_leads,
                detail=_detail(action),
            )
            if action.status in ENDED:
                break
            time.sleep(interval)
            action = _read(factory, action_id) or action
    err.print(f"{action_id}: {action.status}. {_detail(action)}")
    if action.status == "error":
        err.print(f"[red]{action.error}[/red]")
        raise typer.Exit(1)


def _read(factory: sessionmaker[Session], action_id: str) -> BulkAction | None:
    with factory() as session:
        return session.get(BulkAction, action_id)


def _detail(action: BulkAction) -> str:
    """Objects done, and what was skipped by reason."""
    total = "?" if action.n_objects is None else action.n_objects
    objects = f"objects {action.n_objects_processed}/{total}"
    skipped = ", ".join(
        f"{reason} {count}" for reason, count in sorted((action.skipped or {}).items())
    )
    return f"{objects}; skipped: {skipped}" if skipped else objects
