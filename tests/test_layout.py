"""The package's layout: no import cycle among its modules (imports at module level and inside
functions count, ``if TYPE_CHECKING:`` does not), no module over 400 lines, and no assignment that
patches an object the module does not own, such as a library's method.

Read with ``ast`` (``tests/layout_rules.py``); nothing is imported. The rules' limits:
- only imports of the package's own modules make edges; an ``importlib`` call or a string given
  to Django (``"app.Model"``, a dotted setting) is no import and is not seen;
- the patch rule knows names, not types. It flags any assignment to an attribute of a name
  imported from outside the package, and a function (a lambda, a function of the module, a
  ``partial``, or a wrapper of the attribute's old value) set on any object but ``self``/``cls``
  or the module's own classes and functions. An attribute a class of the module declares
  (``self.x = …``) counts as that class's state. It cannot tell that a plain variable holds a
  library object, nor see a patch made through ``vars()``, ``__dict__`` or a ``mock``.
"""

import textwrap
from pathlib import Path

import wagtail_own_smtp
from tests.layout_rules import cycles, import_graph, modules, patches

PACKAGE_DIR = Path(wagtail_own_smtp.__file__).parent
MAX_LINES = 400


def short(name):
    return name.removeprefix("wagtail_own_smtp.")


def describe(graph, members, cycle):
    """The modules of a cycle, and one way round it: ``a:12 -> b:3 -> a``, each module with the
    line of its import of the next."""
    pairs = zip(cycle, cycle[1:], strict=False)
    steps = [f"{short(module)}:{graph[module][after]}" for module, after in pairs]
    way = " -> ".join(steps + [short(cycle[-1])])
    return f"{', '.join(map(short, members))}\n  e.g. {way}"


def test_no_import_cycle_among_the_packages_modules():
    graph = import_graph(modules(PACKAGE_DIR))
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, *c) for c in found)


def test_no_module_is_over_400_lines():
    over = {short(name): m.lines for name, m in modules(PACKAGE_DIR).items() if m.lines > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_no_assignment_patches_an_object_the_module_does_not_own():
    found = patches(modules(PACKAGE_DIR))
    assert not found, "patching assignments:\n" + "\n".join(found)


def test_imports_inside_functions_are_read():
    # The app's ready() imports the panels inside the function: that edge is in the graph.
    graph = import_graph(modules(PACKAGE_DIR))
    assert "wagtail_own_smtp.panels" in graph["wagtail_own_smtp.apps"]
    assert "wagtail_own_smtp.models" in graph["wagtail_own_smtp.panels"]


# -- the rules themselves: each finds what it is for, on a package written here --------------------


def write_package(root, files):
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "models.py": "from . import forms\n",
            "forms.py": "def form():\n    from .models import Model\n",
            # Only for type checkers: no cycle with models.
            "hints.py": "import typing\nif typing.TYPE_CHECKING:\n    from . import models\n",
            "panels.py": "from pkg import hints\n",
        },
    )
    assert cycles(import_graph(modules(package))) == [
        (["pkg.forms", "pkg.models"], ["pkg.forms", "pkg.models", "pkg.forms"])
    ]


def test_a_cycle_through_a_subpackage_counts_its_init(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "models.py": "def build():\n    from .views.outbox import table\n",
            "views/__init__.py": "from .. import conf\n",
            "views/outbox.py": "table = None\n",
            "conf.py": "from .models import build\n",
        },
    )
    graph = import_graph(modules(package))
    # models imports views.outbox, which runs views/__init__ first: views -> conf -> models.
    assert set(graph["pkg.models"]) == {"pkg.views", "pkg.views.outbox"}
    members = ["pkg.conf", "pkg.models", "pkg.views"]
    assert cycles(graph) == [(members, members + ["pkg.conf"])]


def test_the_patch_rule_flags_library_objects_and_functions_set_on_foreign_objects(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "session.py": """\
                import smtplib
                from functools import partial

                from django.conf import settings

                from .models import SmtpSettings


                class Session:
                    def open(self):
                        self.pending = None
                        self.connection = smtplib.SMTP()
                        self.connection.getreply = self._settled(self.connection.getreply)
                        self.pending = self._settled

                    def _settled(self, reply):
                        return reply


                def patch(size):
                    smtplib.SMTP.getreply = None
                    connection = smtplib.SMTP()
                    connection.send = partial(print)
                    setattr(connection, "rcpt", lambda *args: None)
                    connection.stage = "ehlo"
                    connection.size = len(size)
                    SmtpSettings.panels = []
                    settings.DEBUG = True


                def configure(settings):
                    settings.DEBUG = True
                """,
        },
    )
    found = [entry.split(" (")[0] for entry in patches(modules(package))]
    assert found == [
        "pkg.session:13 self.connection.getreply = …",
        "pkg.session:21 smtplib.SMTP.getreply = …",
        "pkg.session:23 connection.send = …",
        "pkg.session:24 connection.rcpt = …",
        "pkg.session:28 settings.DEBUG = …",
    ]


def test_the_size_rule_counts_lines(tmp_path):
    package = write_package(tmp_path, {"__init__.py": "", "big.py": "x = 1\n" * 401})
    assert modules(package)["pkg.big"].lines == 401
