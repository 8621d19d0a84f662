"""The migrations run on every supported Wagtail, 7.4 LTS included.

`makemigrations` on Wagtail 8 makes a new migration depend on Wagtail 8's newest migration, which
7.4 does not have (`NodeNotFoundError` in `migrate` on a 7.4 site): this catches it on any Wagtail.
"""

import pytest
from django.db.migrations.loader import MigrationLoader

NEWEST_IN_WAGTAIL_74 = 97  # wagtailcore.0097_baselogentry_uuid_action_timestamp_indexes


@pytest.mark.parametrize("app", ["wagtail_own_smtp", "testapp"])
def test_migrations_need_no_wagtail_migration_newer_than_7_4(app):
    loader = MigrationLoader(None, ignore_no_migrations=True)
    migrations = [key for key in loader.disk_migrations if key[0] == app]
    assert migrations
    for key in migrations:
        for dependency_app, dependency in loader.disk_migrations[key].dependencies:
            if dependency_app == "wagtailcore":
                assert int(dependency[:4]) <= NEWEST_IN_WAGTAIL_74, (
                    f"{key[0]}.{key[1]} depends on wagtailcore.{dependency}, which Wagtail 7.4 "
                    "lacks: depend on what the migration really needs (Site: wagtailcore.0001)"
                )
