"""Build the sdist and the wheel (from the sdist) and check what they ship.

The wheel must hold every file of the package as committed (templates, migrations, static files,
translations, py.typed), every translation compiled (.mo), and nothing else; installed into a
fresh virtualenv it must import, and its migrations must be found and apply.

Run from the repository root with the project's virtualenv (needs ``build``):
    python scripts/check_package.py
"""

import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "wagtail_own_smtp"
SDIST_MUST_HOLD = ["README.md", "CHANGELOG.md", "SECURITY.md", "LICENSE", "pyproject.toml"]
NOT_SHIPPED = ("tests/", "example_project/", "bench/", "scripts/", ".ci/")

# Runs inside the fresh virtualenv, away from the source tree.
INSTALLED_CHECK = """
import sys
from pathlib import Path

import django
from django.conf import settings

import wagtail_own_smtp

location = Path(wagtail_own_smtp.__file__).parent
assert "site-packages" in location.parts, f"imported from {location}, not the installed wheel"
settings.configure(
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "taggit",
        "modelcluster",
        "wagtail",
        "wagtail.contrib.settings",
        "django_q",
        "wagtail_own_smtp",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
    STATIC_URL="/static/",
    Q_CLUSTER={"name": "check", "orm": "default", "timeout": 90, "retry": 120},
)
django.setup()

from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

loader = MigrationLoader(None, ignore_no_migrations=True)
found = sorted(name for app, name in loader.disk_migrations if app == "wagtail_own_smtp")
assert found, "no migrations of wagtail_own_smtp found"
call_command("migrate", verbosity=0)
print(f"installed wheel: {location}; migrations {found} found and applied")
"""


def run(*command, cwd=None, label=None):
    """Run a step; its output is shown only when it fails (pip and build are talkative)."""
    print("+", label or " ".join(str(part) for part in command), flush=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(f"failed: {label or command[:3]}")
    return done.stdout


def committed_package_files():
    listed = subprocess.run(
        ["git", "ls-files", PACKAGE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if (ROOT / name).exists()}


def check_sdist(sdist, problems):
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(top + "/") for name in archive.getnames()}
    problems += [f"sdist lacks {name}" for name in SDIST_MUST_HOLD if name not in names]
    problems += [f"sdist ships {name}" for name in names if name.startswith(NOT_SHIPPED)]


def check_wheel(wheel, problems):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = committed_package_files()
    problems += [f"wheel lacks {name}" for name in sorted(expected - names)]
    problems += [f"wheel ships {name}" for name in sorted(names) if name.startswith(NOT_SHIPPED)]
    for required in (f"{PACKAGE}/py.typed", f"{PACKAGE}/migrations/0001_initial.py"):
        if required not in names:
            problems.append(f"wheel lacks {required}")
    if not any(name.startswith(f"{PACKAGE}/templates/") for name in names):
        problems.append("wheel ships no templates")
    catalogs = sorted(name for name in names if name.endswith(".po"))
    for catalog in catalogs:
        if catalog.removesuffix(".po") + ".mo" not in names:
            problems.append(f"wheel lacks the compiled {catalog.removesuffix('.po')}.mo")
    if not catalogs:
        print("note: the package has no translations yet")
    return names


def main():
    problems = []
    with tempfile.TemporaryDirectory(prefix="own-smtp-package-") as temp:
        temp = Path(temp)
        dist = temp / "dist"
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        (sdist,) = dist.glob("*.tar.gz")
        (wheel,) = dist.glob("*.whl")
        check_sdist(sdist, problems)
        names = check_wheel(wheel, problems)
        print(f"{wheel.name}: {len(names)} files")

        environment = temp / "venv"
        venv.create(environment, with_pip=True)
        python = environment / "bin" / "python"
        run(python, "-m", "pip", "install", "--quiet", wheel)
        print(
            run(python, "-c", INSTALLED_CHECK, cwd=temp, label="import, find and apply migrations")
        )

    if problems:
        print("\n".join(["Package problems:", *dict.fromkeys(problems)]), file=sys.stderr)
        sys.exit(1)
    print("package check passed")


if __name__ == "__main__":
    main()
