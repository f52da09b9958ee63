"""The package's layout, checked: which layer may import which, and the README's map of it.

Every module of vod_events belongs to one layer. Lowest first, where an arrow means "may be
imported by":

    model  <-  engine  <-  config  <-  service  <-  cli

A module may import its own layer and the layers below it, never one above: the model knows
nothing of queues, the engine nothing of config files, the config nothing of the running
service, and only the command line knows about commands. Every import counts, wherever it is:
at module level, inside a function (lazy), or under `if TYPE_CHECKING:`.

Where the modules that are not obviously one layer sit, and why:

- `vod_events/__init__.py`, the public face: **engine**. It re-exports the model and `Router`
  (engine), and Python runs it before any `vod_events.*` module, so whatever it imports is
  loaded by everything: it must never reach config, service or cli. `import vod_events`, or
  `from vod_events import NAME` where NAME is not a submodule, counts as importing the engine,
  so a model module cannot do it.
- `__main__.py` (`python -m vod_events`) and `consume.py` (the `python -m vod_events.consume`
  shim): **cli**, which they only forward to.
- `samples/` (the sample payloads and `payloads()`): **model**: data, importing nothing.
- `mns_server/` stands **apart**, outside the stack: a stand-in for the cloud service, usable
  on its own, it imports nothing of vod_events outside itself, and only the cli (`demo`) may
  import it among the package's modules (the tests and bench/ use it too; they are not walked
  here). Its own `mns_server/cli.py` (the `mns-server` command) belongs to it.

Only `import` statements are seen: a module named in a string (the command table in
`cli/__init__.py`, loaded with `importlib`) is not, and needs none of this - those strings
name cli modules and `mns_server.cli`, which only the command line loads.

A new top-level module or subpackage fails `test_every_module_has_a_layer` until it is given
a layer in `LAYERS` below, and `test_readme_layout_names_every_module` until the README's
"## Layout" section names it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vod_events"

MODEL, ENGINE, CONFIG, SERVICE, CLI = "model", "engine", "config", "service", "cli"
STACK = (MODEL, ENGINE, CONFIG, SERVICE, CLI)  # lowest first
APART = "mns_server"  # outside the stack: see the module docstring
FACADE = ENGINE  # the layer of `vod_events/__init__.py`

# Each top-level module or subpackage of vod_events -> its layer (a subpackage's modules share it).
LAYERS: dict[str, str] = {
    # model: what an event is
    "errors": MODEL,
    "events": MODEL,
    "results": MODEL,
    "decoder": MODEL,
    "serialize": MODEL,
    "_coerce": MODEL,
    "_construct": MODEL,
    "samples": MODEL,
    # engine: what happens to a delivery
    "router": ENGINE,
    "processing": ENGINE,
    "retry": ENGINE,
    "tracing": ENGINE,
    "tracing_otel": ENGINE,
    "aio": ENGINE,
    "limits": ENGINE,
    "backoff": ENGINE,
    "dedupe": ENGINE,
    "completions": ENGINE,
    "postgres_store": ENGINE,
    "owners": ENGINE,
    "deadletter": ENGINE,
    "stats": ENGINE,
    "aijobs": ENGINE,
    "consumer": ENGINE,
    "polling": ENGINE,
    "handlers": ENGINE,
    "appendfile": ENGINE,
    "transports": ENGINE,
    # config: the daemon's configuration
    "config": CONFIG,
    # service: the running daemon around the engine
    "service": SERVICE,
    # cli: the commands
    "cli": CLI,
    "__main__": CLI,
    "consume": CLI,
    # apart: the local MNS server
    "mns_server": APART,
}


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, as `importer` names it at `path:line`."""

    importer: str  # dotted name of the importing module
    target: str  # dotted name of the module imported (a submodule if `from X import Y` is one)
    path: Path
    line: int


def module_name(root: Path, path: Path) -> str:
    """`root/vod_events/service/ops.py` -> `vod_events.service.ops` (`__init__` dropped)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    """A directory of modules, with or without `__init__.py` (`service/` has none)."""
    return path.is_dir() and any(path.glob("*.py"))


def is_module(root: Path, dotted: str) -> bool:
    """Whether `dotted` names a module or package under `root`."""
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or is_package(base)


def modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    """Every module of `package` (found under `root`), with its file."""
    for path in sorted((root / package).rglob("*.py")):
        yield module_name(root, path), path


def imports_of(root: Path, path: Path) -> Iterator[Import]:
    """Every import in the file, wherever it is (ast.walk sees function bodies and
    `if TYPE_CHECKING:` blocks alike), relative ones resolved."""
    importer = module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from: the module itself if it is a package.
    here = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here[: len(here) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if alias.name != "*" and is_module(root, sub) else base
                yield Import(importer, target, path, node.lineno)


def layer_of(dotted: str) -> str | None:
    """The layer of a module of the package; None if it has none (not in `LAYERS`)."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return FACADE
    return LAYERS.get(parts[1])


def allowed(importer: str, target: str) -> bool:
    """May a module of layer `importer` import one of layer `target`?"""
    if importer == APART:
        return target == APART
    if target == APART:
        return importer == CLI
    return STACK.index(target) <= STACK.index(importer)


def violations(root: Path, package: str = PACKAGE) -> list[str]:
    """Every import of `package` (under `root`) against the layers, one line per problem."""
    problems: list[str] = []
    for module, path in modules(root, package):
        where = path.relative_to(root)
        own = layer_of(module)
        if own is None:
            problems.append(f"{where}: {module} has no layer (add it to LAYERS)")
            continue
        for imp in imports_of(root, path):
            if imp.target.split(".")[0] != package:
                continue  # the standard library or a dependency
            theirs = layer_of(imp.target)
            if theirs is None:
                problems.append(f"{where}:{imp.line}: {module} imports {imp.target}, no layer")
            elif not allowed(own, theirs):
                problems.append(
                    f"{where}:{imp.line}: {module} ({own}) imports {imp.target} ({theirs})"
                )
    return list(dict.fromkeys(problems))  # `from X import a, b` is one import, said once


def top_level(root: Path, package: str = PACKAGE) -> list[str]:
    """The package's top-level modules and subpackages, by name."""
    names = [p.stem for p in (root / package).glob("*.py")]
    names += [p.name for p in (root / package).iterdir() if is_package(p)]
    return sorted(names)


# --- the tree -------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    names = top_level(ROOT)
    assert [n for n in names if n != "__init__" and n not in LAYERS] == []
    assert [n for n in LAYERS if n not in names] == [], "LAYERS names modules that are gone"


def test_imports_point_down_the_layers() -> None:
    problems = violations(ROOT)
    assert not problems, "imports pointing the wrong way:\n" + "\n".join(problems)


# --- the checker itself: it can fail ---------------------------------------------------------


def write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_checker_reports_every_wrong_way_import(tmp_path: Path) -> None:
    pkg = PACKAGE
    write(tmp_path, f"{pkg}/__init__.py", f"from {pkg}.router import Router\n")
    write(tmp_path, f"{pkg}/router.py", f"from {pkg}.errors import ConfigError\n")
    write(tmp_path, f"{pkg}/service/__init__.py")
    write(tmp_path, f"{pkg}/service/logs.py")
    write(tmp_path, f"{pkg}/cli/__init__.py")
    write(tmp_path, f"{pkg}/mns_server/__init__.py", "from . import wire\n")
    write(tmp_path, f"{pkg}/mns_server/wire.py")
    # model -> service, lazily inside a function
    write(
        tmp_path,
        f"{pkg}/errors.py",
        f"def f() -> None:\n    from {pkg}.service import logs\n",
    )
    # model -> engine, under TYPE_CHECKING; and model -> the facade (engine)
    write(
        tmp_path,
        f"{pkg}/events.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        f"    import {pkg}.consumer\n"
        f"from {pkg} import Router\n",
    )
    write(tmp_path, f"{pkg}/consumer.py", f"import {pkg}.cli\n")  # engine -> cli
    write(tmp_path, f"{pkg}/config/__init__.py", "from ..service import logs\n")  # relative
    write(tmp_path, f"{pkg}/mns_server/api.py", f"from {pkg} import errors\n")  # apart -> model
    write(tmp_path, f"{pkg}/service/ops.py", f"from {pkg}.mns_server import wire\n")
    write(tmp_path, f"{pkg}/cli/demo.py", f"from {pkg}.mns_server import wire\nimport json\n")
    write(tmp_path, f"{pkg}/gadget.py")  # a module without a layer

    assert sorted(violations(tmp_path)) == sorted(
        [
            f"{pkg}/errors.py:2: {pkg}.errors (model) imports {pkg}.service.logs (service)",
            f"{pkg}/events.py:3: {pkg}.events (model) imports {pkg}.consumer (engine)",
            f"{pkg}/events.py:4: {pkg}.events (model) imports {pkg} (engine)",
            f"{pkg}/consumer.py:1: {pkg}.consumer (engine) imports {pkg}.cli (cli)",
            f"{pkg}/config/__init__.py:1: {pkg}.config (config) imports "
            f"{pkg}.service.logs (service)",
            f"{pkg}/mns_server/api.py:1: {pkg}.mns_server.api (mns_server) imports "
            f"{pkg}.errors (model)",
            f"{pkg}/service/ops.py:1: {pkg}.service.ops (service) imports "
            f"{pkg}.mns_server.wire (mns_server)",
            f"{pkg}/gadget.py: {pkg}.gadget has no layer (add it to LAYERS)",
        ]
    )


@pytest.mark.parametrize("importer", [*STACK, APART])
@pytest.mark.parametrize("target", [*STACK, APART])
def test_allowed_is_the_documented_arrows(importer: str, target: str) -> None:
    expected = {
        MODEL: {MODEL},
        ENGINE: {MODEL, ENGINE},
        CONFIG: {MODEL, ENGINE, CONFIG},
        SERVICE: {MODEL, ENGINE, CONFIG, SERVICE},
        CLI: {*STACK, APART},
        APART: {APART},
    }
    assert allowed(importer, target) is (target in expected[importer])


# --- the README's map ------------------------------------------------------------------------


def layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Layout\n(.*?)(?=^## )", text, flags=re.DOTALL | re.MULTILINE)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def named_paths(section: str) -> set[str]:
    """Every path-like word in backquotes: `cli/`, `consume.py`, `vod_events/__init__.py`."""
    words: set[str] = set()
    for span in re.findall(r"`([^`]+)`", section):
        words.update(w.strip(",;") for w in span.split())
    return {w for w in words if w.endswith((".py", "/"))}


def test_readme_layout_names_every_module() -> None:
    named = named_paths(layout_section())

    def is_named(name: str) -> bool:
        short = f"{name}/" if is_package(ROOT / PACKAGE / name) else f"{name}.py"
        return short in named or f"{PACKAGE}/{short}" in named

    missing = [name for name in top_level(ROOT) if not is_named(name)]
    assert not missing, f"README.md '## Layout' does not name: {missing}"


def test_readme_layout_names_only_what_exists() -> None:
    """A name in a table row is looked for at the top, in the package, and in the folders the
    row's first cell names (`cli/` ... `consume.py`). Test suites come and go with their own
    changes, so paths under tests/ are not held to it."""
    stale: list[str] = []
    for line in layout_section().splitlines():
        first = line.split("|")[1] if line.startswith("|") else ""
        folders = [Path(), *(Path(p) for p in named_paths(first) if p.endswith("/"))]
        bases = [base / folder for folder in folders for base in (ROOT, ROOT / PACKAGE)]
        stale += [
            path
            for path in sorted(named_paths(line))
            if not path.startswith("tests/") and not any((b / path).exists() for b in bases)
        ]
    assert not stale, f"README.md '## Layout' names paths that do not exist: {stale}"
