"""`python -m clove.migrate_check`: fail when the models and the migrations disagree.

Upgrades a throwaway SQLite database to head and compares it with the models
(what `alembic check` does), so CI catches a model change without a migration.
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


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'check.db'}")
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        engine.dispose()
    if diff:
        print("The models and the migrations disagree; write a migration for:")
        for change in diff:
            print(f"  {change}")
        return 1
    print("Models and migrations agree.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
