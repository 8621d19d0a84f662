"""The package's layout, read with ``ast`` (nothing is imported): the import graph of its modules,
their sizes, and assignments that replace an attribute of an object the module does not own.

``tests/test_layout.py`` holds the rules to these; this module only reads.
"""

import ast
import builtins
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "wagtail_own_smtp.views.oauth"
    path: Path
    is_package: bool  # an __init__.py

    @property
    def lines(self):
        return len(self.path.read_text(encoding="utf-8").splitlines())


def modules(package_dir, skip=("migrations",)):
    """Every module of the package under ``package_dir``, by dotted name (``skip``: folders)."""
    package_dir = Path(package_dir)
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        if any(part in skip for part in relative.parts):
            continue
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _is_type_checking(test):
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The package modules one module imports: at module level, inside functions and classes;
    not inside ``if TYPE_CHECKING:`` (its ``else`` counts)."""

    def __init__(self, module, known):
        self.module, self.known = module, known
        self.root = module.name.split(".")[0]
        self.edges = {}  # target -> line of the first import of it

    def _add(self, target, node):
        """An edge to ``target`` and to each package around it that the importer is not in:
        importing ``views.oauth`` from outside ``views`` runs ``views/__init__`` first."""
        parts = target.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            around_importer = end < len(parts) and self.module.name.startswith(name + ".")
            if name in self.known and name != self.module.name and not around_importer:
                self.edges.setdefault(name, node.lineno)

    def _longest_module(self, dotted):
        parts = dotted.split(".")
        while parts and ".".join(parts) not in self.known:
            parts.pop()
        return ".".join(parts)

    def visit_If(self, node):
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == self.root:
                self._add(self._longest_module(alias.name), node)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.module.name.split(".")
            if not self.module.is_package:
                base.pop()
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != self.root:
            return
        for alias in node.names:
            # "from . import x" and "from .views import x": the module x where x is one, else
            # the module (or package __init__) that defines the name.
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.known else self._longest_module(source), node)


def import_graph(known):
    """{module: {imported module: line}} over the package's own modules."""
    graph = {}
    for module in known.values():
        visitor = _Imports(module, known)
        visitor.visit(ast.parse(module.path.read_text(encoding="utf-8"), str(module.path)))
        graph[module.name] = visitor.edges
    return graph


def cycles(graph):
    """Each group of modules that import each other (Tarjan's strongly connected components):
    ``(members, one cycle through them)``, e.g. ``(["a", "b"], ["a", "b", "a"])``."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(sorted(group), _cycle_through(graph, group)) for group in groups]


def _cycle_through(graph, group):
    """The shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph.get(node, ())):
            if target == start:
                return paths[node] + [start]
            if target in group and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    return [start, start]


_BUILTINS = set(dir(builtins))

# -- replacing another object's attribute ---------------------------------------------------------


@dataclass
class _Scope:
    kinds: dict = field(default_factory=dict)  # name -> "library", "own", "def", "self", "local"
    parent: "_Scope | None" = None

    def kind(self, name):
        scope = self
        while scope is not None:
            if name in scope.kinds:
                return scope.kinds[name]
            scope = scope.parent
        return None


def _root(node):
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Patches(ast.NodeVisitor):
    """Assignments ``obj.attr = value`` (or ``setattr(obj, "attr", value)``) that patch:

    - ``obj`` is, or is reached from, a name bound to an import from outside the package (a
      library's module, class or function): ``smtplib.SMTP.getreply = ...``, whatever the value;
    - ``obj`` is an object the module does not own (anything but ``self``/``cls``, or a class or
      function defined in the module) and ``value`` is a function: a lambda, a function or method
      defined in the module, ``functools.partial``/``types.MethodType``, or a call wrapping the
      attribute's old value: ``connection.getreply = wrap(connection.getreply)``.
    """

    def __init__(self, module, root_package):
        self.module, self.root_package = module, root_package
        self.scope = _Scope()
        self.functions = set()  # names of every def in the module, at any depth
        self.slots = set()  # attributes the module's own classes declare
        self.found = []

    def run(self, tree):
        self.functions = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.slots = _declared_attributes(tree)
        self._bind_names(tree.body, self.scope)
        self.visit(tree)
        return self.found

    def _bind_names(self, body, scope):
        """What each name of a block refers to: imports and defs win over other bindings."""
        for node in _same_scope(body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    scope.kinds[alias.asname or top] = self._origin(top)
            elif isinstance(node, ast.ImportFrom):
                top = "." if node.level else (node.module or "").split(".")[0]
                for alias in node.names:
                    scope.kinds[alias.asname or alias.name] = self._origin(top)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                scope.kinds[node.name] = "def"
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                scope.kinds.setdefault(node.id, "local")

    def _origin(self, top):
        return "own" if top in (".", self.root_package) else "library"

    def _visit_function(self, node):
        scope = _Scope(parent=self.scope)
        arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
        for position, argument in enumerate(arguments):
            first = position == 0 and argument.arg in ("self", "cls")
            scope.kinds[argument.arg] = "self" if first else "local"
        for extra in (node.args.vararg, node.args.kwarg):
            if extra:
                scope.kinds[extra.arg] = "local"
        self._bind_names(node.body if isinstance(node.body, list) else [node.body], scope)
        self._visit_in(scope, node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_ClassDef(self, node):
        scope = _Scope(parent=self.scope)
        self._bind_names(node.body, scope)
        self._visit_in(scope, node)

    def _visit_in(self, scope, node):
        outer, self.scope = self.scope, scope
        self.generic_visit(node)
        self.scope = outer

    def visit_Assign(self, node):
        for target in node.targets:
            self._check(target, node.value, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._check(node.target, node.value, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self._check(node.target, node.value, node)
        self.generic_visit(node)

    def visit_Call(self, node):
        is_setattr = isinstance(node.func, ast.Name) and node.func.id == "setattr"
        if is_setattr and len(node.args) == 3 and isinstance(node.args[1], ast.Constant):
            target = ast.Attribute(value=node.args[0], attr=str(node.args[1].value))
            self._check(target, node.args[2], node)
        self.generic_visit(node)

    def _check(self, target, value, node):
        if isinstance(target, ast.Tuple | ast.List):
            values = value.elts if isinstance(value, ast.Tuple | ast.List) else []
            for position, element in enumerate(target.elts):
                self._check(element, values[position] if position < len(values) else None, node)
            return
        if not isinstance(target, ast.Attribute):
            return
        kind = self.scope.kind(_root(target.value))
        # Only self, cls, or a class or function of this module is its own; self.connection is not.
        own = kind in ("self", "def") and isinstance(target.value, ast.Name)
        # An attribute a class of this module declares holds that class's own state.
        own = own or target.attr in self.slots
        if kind == "library":
            reason = "an attribute of a library object"
        elif not own and self._is_function(value, target):
            reason = "a function set on an object this module does not own"
        else:
            return
        self.found.append(f"{self.module.name}:{node.lineno} {ast.unparse(target)} = … ({reason})")

    def _is_function(self, value, target):
        if isinstance(value, ast.Lambda):
            return True
        if isinstance(value, ast.Name | ast.Attribute):
            name = value.id if isinstance(value, ast.Name) else value.attr
            return name in self.functions
        if isinstance(value, ast.Call):
            func = value.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            # obj.method = wrap(obj.method); len(obj.size) and the like wrap nothing.
            wraps_old = called not in _BUILTINS and any(
                ast.unparse(argument) == ast.unparse(target) for argument in value.args
            )
            return wraps_old or called in ("partial", "MethodType")
        return False


def _declared_attributes(tree):
    """Attributes the module's classes declare: in the class body or as ``self.x = …``."""
    declared = set()
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for node in _same_scope(cls.body):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                declared.add(node.id)
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                declared.add(node.attr)
    return declared


def _same_scope(body):
    """The nodes of a block in its own scope: a nested def, class or lambda, not its inside."""
    stack = list(body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def patches(known):
    """Every patching assignment in the package's modules, as "module:line target = … (why)"."""
    found = []
    for module in known.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        found += _Patches(module, module.name.split(".")[0]).run(tree)
    return found
