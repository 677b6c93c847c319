"""`python -m clove.migrate_check [DATABASE_URL]`: fail when the models and the migrations disagree.

Upgrades a database to head (a throwaway SQLite file unless a URL of an empty database is
given) and compares it with the models, as `alembic check` does, so CI catches a model
change without a migration on both databases.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from clove.db import make_engine
from clove.migrate import upgrade
from clove.models import Base


def differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _modelled})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _modelled(_obj: object, name: str | None, type_: str, *_: object) -> bool:
    # PostgreSQL-only indexes outside the models: trigram indexes (migration 0003) and one per
    # number/date custom field (custom_field.service.create_value_index).
    return not (type_ == "index" and name is not None and name.startswith(("ix_trgm_", "ix_cf_")))


def main() -> int:
    if len(sys.argv) > 1:
        diff = differences(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            diff = differences(f"sqlite:///{Path(tmp) / 'check.db'}")
    if diff:
        print("The models and the migrations disagree; write a migration for:")
        for change in diff:
            print(f"  {change}")
        return 1
    print("Models and migrations agree.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
