"""Keys that see code, not text: the symbols a stage runs, hashed as normalised syntax trees.

A stage (an analysis's `compute` or `draw`) is keyed on exactly the code it can run: starting
from its entry function, every module-level function, class and constant it names is followed,
across the project's own modules (`from digits.training import train`, `quality.knn(...)`,
re-exports through a package's `__init__`), and each is hashed as its syntax tree with
docstrings and type annotations removed. So a comment, a docstring, blank lines, formatting or
a type hint change no key, while an edit to a training loop changes the key of exactly the
stages that can call it. Quarto's `freeze` hashes only the notebook's own text (it misses an
edited import) and file hashes see comments (they stale on a reworded docstring); this does
neither.

The price is that only names are followed, not values: a method reached through an object the
stage never names (an attribute of a parameter) is not seen. The engine therefore also keys
every compute stage on the modules that shape every result (`report.streams`), and the stage's
own module is the place for its code. Presentation modules can be excluded from compute keys
(`exclude`): a test checks that no compute stage reaches them at all.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WHOLE_MODULE = "*"  # the symbol name that stands for every top-level statement of a module
LOOSE = "<module>"  # top-level statements that define nothing (e.g. a setup call)


@dataclass
class ModuleInfo:
    """One parsed project module: what its top level defines and imports."""

    name: str
    path: str  # relative to the project root, for messages
    symbols: dict[str, list[ast.stmt]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    loose: list[ast.stmt] = field(default_factory=list)


@dataclass(frozen=True)
class Closure:
    """The symbols a stage can run ('path:name' -> digest), and the excluded ones it reached."""

    symbols: Mapping[str, str]
    excluded: frozenset[str]


def strip_text(node: ast.AST) -> ast.AST:
    """A copy of `node` without docstrings or type annotations (what never changes behaviour)."""
    node = copy.deepcopy(node)
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = sub.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                sub.body = body[1:] or [ast.Pass()]
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sub.returns = None
        if isinstance(sub, ast.arg):
            sub.annotation = None
        if isinstance(sub, ast.AnnAssign):
            # A dataclass field's existence and default matter; its type hint does not.
            sub.annotation = ast.Constant(value=None)
    return node


def digest(nodes: Iterable[ast.AST]) -> str:
    """SHA-256 over the normalised dumps of `nodes` (no line numbers, docstrings or hints)."""
    return _dump_digest(strip_text(node) for node in nodes)


def _dump_digest(stripped: Iterable[ast.AST]) -> str:
    h = hashlib.sha256()
    for node in stripped:
        h.update(canonical_dump(node).encode())
        h.update(b"\0")
    return h.hexdigest()


# Fields that newer Pythons added to existing nodes (3.12: a function's or class's type
# parameters); left out while empty, so code without the new syntax dumps as it did before.
NEWER_FIELDS = frozenset({"type_params"})


def canonical_dump(node: Any) -> str:
    """A syntax tree as text that is the same under Python 3.10 to 3.13: Python 3.11's
    `ast.dump(node, include_attributes=False)`, less the newer fields while they are empty."""
    # Why not ast.dump itself: its text depends on the Python that runs it (3.12 adds
    # `type_params=[]` to every function and class, 3.13 leaves out empty lists), so every key
    # made on the GPU machine's Python 3.12 was stale on this project's 3.11 and the reverse.
    # This is 3.11's algorithm without indentation; over the project's 17,568 statements it
    # gives 3.11's text exactly, and the same text under 3.10, 3.12 and 3.13 (checked
    # 2026-12-05; tests/test_codekeys.py runs the other Pythons it finds).
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            # An optional field (its class default None) left empty is not written, as 3.11.
            if value is None and getattr(type(node), name, ...) is None:
                continue
            if name in NEWER_FIELDS and not value:
                continue
            fields.append(f"{name}={canonical_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return f"[{', '.join(canonical_dump(item) for item in node)}]"
    return repr(node)


def _is_main_guard(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and \
        isinstance(test.left, ast.Name) and test.left.id == "__name__"


def _is_type_checking(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and not node.orelse and \
        attribute_chain(test)[-1:] == ["TYPE_CHECKING"] if test is not None else False


def _bound_names(target: ast.AST) -> Iterator[str]:
    for sub in ast.walk(target):
        if isinstance(sub, ast.Name):
            yield sub.id


class CodeIndex:
    """The project's modules under `root`, parsed on first use, and symbol closures over them."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.packages = {p.name for p in self.root.iterdir()
                         if not p.name.startswith(".") and (p / "__init__.py").is_file()}
        self._modules: dict[str, ModuleInfo | None] = {}
        self._digests: dict[tuple[str, str], tuple[str, list[tuple[str, str]]]] = {}

    # --- modules ------------------------------------------------------------------------------
    def file_of(self, module: str) -> Path | None:
        """The source file of a project module, or None for anything else (third party)."""
        if module.split(".")[0] not in self.packages:
            return None
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def module(self, name: str) -> ModuleInfo | None:
        """The parsed project module `name` (None when it is not one)."""
        if name not in self._modules:
            path = self.file_of(name)
            self._modules[name] = None if path is None else self._parse(name, path)
        return self._modules[name]

    def _parse(self, name: str, path: Path) -> ModuleInfo:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        info = ModuleInfo(name, path.relative_to(self.root).as_posix())
        body = tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the module docstring
        self._collect(info, body, package)
        return info

    def _collect(self, info: ModuleInfo, body: list[ast.stmt], package: str) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                info.imports.update(imported_names(node, package))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                info.symbols.setdefault(node.name, []).append(node)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n for t in targets for n in _bound_names(t)]
                for bound in names:
                    info.symbols.setdefault(bound, []).append(node)
                if not names:
                    info.loose.append(node)
            elif _is_main_guard(node):
                continue
            elif _is_type_checking(node):
                # Imports for annotations only: they never run, so they are in no key.
                self._collect(info, node.body, package)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                # Definitions inside (e.g. `if TYPE_CHECKING:` imports) count as top level;
                # the statement itself is kept whole as a loose statement too.
                for part in ("body", "orelse", "finalbody"):
                    self._collect(info, getattr(node, part, []), package)
                for handler in getattr(node, "handlers", []):
                    self._collect(info, handler.body, package)
                info.loose.append(node)
            else:
                info.loose.append(node)

    # --- closures -----------------------------------------------------------------------------
    def closure(self, entries: Iterable[tuple[str, str]],
                exclude: Collection[str] = ()) -> Closure:
        """Every symbol reachable from `entries` ((module, name) pairs) and its digest.

        Symbols of modules in `exclude` are left out of the digests and listed as `excluded`.
        """
        excluded: set[str] = set()
        done: dict[tuple[str, str], str] = {}
        stack = list(entries)
        while stack:
            module, name = stack.pop()
            if (module, name) in done:
                continue
            info = self.module(module)
            if info is None:
                continue
            if module in exclude:
                excluded.add(f"{info.path}:{name}")
                continue
            nodes = self._nodes(info, name)
            if nodes is None:
                # An imported name re-exported here (`from report.analysis import Analysis`
                # in report/__init__.py): follow it to where it is defined.
                target = info.imports.get(name)
                if target is not None:
                    stack.append((target[0], target[1] or WHOLE_MODULE))
                elif self.module(f"{module}.{name}") is not None:
                    stack.append((f"{module}.{name}", WHOLE_MODULE))
                continue
            done[module, name], references = self._symbol(info, name, nodes)
            stack.extend(references)
            if name != WHOLE_MODULE and info.loose:
                stack.append((module, LOOSE))
        paths = {m: self.module(m).path for m, _ in done}
        return Closure({f"{paths[m]}:{n}": d for (m, n), d in sorted(done.items())},
                       frozenset(excluded))

    def _symbol(self, info: ModuleInfo, name: str,
                nodes: list[ast.stmt]) -> tuple[str, list[tuple[str, str]]]:
        """A symbol's digest and the symbols it names, worked out once per index (stripping
        copies each syntax tree: it was 80 % of a build's key time before this memo)."""
        if (info.name, name) not in self._digests:
            stripped = [strip_text(node) for node in nodes]
            self._digests[info.name, name] = (
                _dump_digest(stripped),
                [ref for node in stripped for ref in self._references(info, node)])
        return self._digests[info.name, name]

    def _nodes(self, info: ModuleInfo, name: str) -> list[ast.stmt] | None:
        if name == WHOLE_MODULE:
            return [n for nodes in info.symbols.values() for n in nodes] + info.loose
        if name == LOOSE:
            return info.loose
        return info.symbols.get(name)

    def _references(self, info: ModuleInfo, node: ast.AST) -> Iterator[tuple[str, str]]:
        """(module, name) of every project symbol a stripped `node` names (so annotations are
        excluded); names bound by imports inside it (a function's lazy imports) resolve like
        module imports."""
        package = info.name if info.path.endswith("__init__.py") else \
            info.name.rpartition(".")[0]
        found = list(_names(node))
        local: dict[str, tuple[str, str | None]] = {}
        for kind, value in found:
            if kind == "import":
                local.update(imported_names(value, package))
        for kind, value in found:
            if kind == "chain":
                yield from self._resolve(info, value, local)

    def _resolve(self, info: ModuleInfo, chain: list[str],
                 local: Mapping[str, tuple[str, str | None]]) -> Iterator[tuple[str, str]]:
        head, rest = chain[0], chain[1:]
        if head in info.symbols and head not in local:
            yield info.name, head
            return
        imports = {**info.imports, **local}
        if head not in imports:
            return  # a builtin, a local variable or a parameter
        module, attr = imports[head]
        if attr is not None:
            if self.module(f"{module}.{attr}") is not None and \
                    attr not in (self.module(module) or ModuleInfo("", "")).symbols:
                module, attr = f"{module}.{attr}", None  # `from digits import original`
            else:
                yield module, attr
                return
        # A module: follow the attribute chain into submodules, then to one symbol.
        while rest and self.module(f"{module}.{rest[0]}") is not None and \
                rest[0] not in (self.module(module) or ModuleInfo("", "")).symbols:
            module, rest = f"{module}.{rest[0]}", rest[1:]
        yield module, rest[0] if rest else WHOLE_MODULE


def _names(node: ast.AST) -> Iterator[tuple[str, Any]]:
    """("chain", ['a', 'b']) for each name or attribute chain `a.b` read in `node` (the longest
    chain only, not its prefixes), and ("import", node) for each import statement in it."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield "import", node
        return
    if isinstance(node, (ast.Attribute, ast.Name)):
        chain = attribute_chain(node)
        if chain and (isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Load)):
            yield "chain", chain
            return
    for child in ast.iter_child_nodes(node):
        yield from _names(child)


def attribute_chain(node: ast.AST) -> list[str]:
    """['a', 'b', 'c'] for `a.b.c`; [] when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    return [node.id, *reversed(parts)]


def imported_names(node: ast.Import | ast.ImportFrom,
                   package: str) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, attribute or None for a module) bound by one import statement."""
    bound: dict[str, tuple[str, str | None]] = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                bound[alias.asname] = (alias.name, None)
            else:
                top = alias.name.split(".")[0]
                bound[top] = (top, None)
        return bound
    base = node.module or ""
    if node.level:
        parts = package.split(".") if package else []
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(p for p in [*parts, base] if p)
    for alias in node.names:
        if alias.name != "*":
            bound[alias.asname or alias.name] = (base, alias.name)
    return bound


def combine(symbols: Mapping[str, str], **parts: object) -> str:
    """One key (hex SHA-256) from symbol digests and any other JSON-friendly parts."""
    payload = {"symbols": dict(sorted(symbols.items())), **parts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def changed_code(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What changed between two symbol digests, one line per file: 'digits/training.py: train'."""
    by_file: dict[str, list[str]] = {}
    for symbol in sorted(set(before) | set(after)):
        if before.get(symbol) != after.get(symbol):
            path, _, name = symbol.rpartition(":")
            label = name if symbol in before and symbol in after else \
                f"{name} ({'new' if symbol in after else 'no longer used'})"
            by_file.setdefault(path, []).append(label)
    return [f"{path}: {', '.join(names)}" for path, names in by_file.items()]
