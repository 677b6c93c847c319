"""Fault injection for the crash tests."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """SIGKILLs this process at the named point when CLOVE_TEST_CRASH_AT names it (never set
    in production)."""
    if os.environ.get("CLOVE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
