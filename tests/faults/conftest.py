"""The slow suite: faults, killed workers, a dropped database, clock skew, several clusters.

It runs with ``make test-slow`` (``OWN_SMTP_SLOW=1``, PostgreSQL and Redis). A plain ``pytest``
skips it and says so. Each scenario records its figures (messages queued, sent, lost,
duplicated, ...): they are printed at the end of the run and written to
``tests/artifacts/fault-figures.json`` (under ``OWN_SMTP_ARTIFACTS`` if set).
"""

import json
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

_figures = {}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("OWN_SMTP_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow suite: run it with `make test-slow` (OWN_SMTP_SLOW=1)")
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)


def needs_postgres():
    """Skip a multi-process test on SQLite: several processes writing at once need PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (OWN_SMTP_TEST_DB=postgres, as `make test-slow` sets): several "
            "processes write to the database at once"
        )


def needs_redis(db):
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (`make test-slow` expects it running)")
    return client


@pytest.fixture
def figures(request):
    """A dict the test fills with its figures; kept under the test's name."""
    found = {}
    started = time.monotonic()
    yield found
    found.setdefault("seconds", round(time.monotonic() - started, 1))
    found["database"] = connection.vendor
    _figures[request.node.name] = found


def pytest_terminal_summary(terminalreporter):
    if not _figures:
        return
    terminalreporter.section("fault figures")
    for name, found in _figures.items():
        terminalreporter.write_line(f"{name}:")
        for key, value in found.items():
            terminalreporter.write_line(f"    {key}: {value}")
    figures_file = Path(settings.ARTIFACTS_DIR) / "fault-figures.json"
    figures_file.write_text(json.dumps(_figures, indent=2, default=str))
