"""`clove account ...` (being written)."""

import typer

account_app = typer.Typer(help="Connected email accounts.", no_args_is_help=True)
