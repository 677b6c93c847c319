from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from clove.db import make_engine
from clove.migrate import alembic_config, upgrade


def test_organizations_from_before_statuses_get_the_defaults(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            text(
                "INSERT INTO organization (id, name, currency, enable_unsubscribe_link,"
                " require_unsubscribe_link, date_created, date_updated)"
                " VALUES ('orga_old', 'Old', 'USD', 1, 0, '2026-01-01', '2026-01-01')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT label FROM lead_status WHERE organization_id = 'orga_old' ORDER BY position"
            )
        ).scalars()
        assert list(rows) == ["Potential", "Bad Fit", "Qualified", "Customer"]
    engine.dispose()
