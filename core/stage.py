"""What a stage is to the library: its declaration (StageSpec, one row of the table in
stages/graph.py) and the context of one call (StageCall).

Every stage's cache key is `runstore.cache_key` over what StageCall hands it (`StageCall.run`
builds with it, `StageCall.key` shows it):
  * the stage's own recipe section and every other setting it declares it uses (`uses`: model.dtype,
    model.lora, data.template, seed, ...), resolved to JSON (`key_config`);
  * the content hashes of its inputs;
  * its code version (`code_version`): the library (core/, data/, rewards/) plus the stage's own
    module and the stage modules that one imports; never the flows or the shell.
The stage sees the recipe only through a RecipeView that lets it read just those settings, so a
setting it uses but does not declare fails loudly instead of silently missing from the key.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import devices
from core.runstore import (
    LIBRARY_PACKAGES,
    PROJECT_ROOT,
    Ref,
    RunStore,
    StageOutcome,
    StageResult,
    cache_key,
    package_files,
    source_version,
)

# What a stage outputs: the task data or a dataset, a base model (pocket or a user's), a LoRA
# adapter on a base, a whole model (merged, reward model), or an evaluation.
Output = Literal["dataset", "base_model", "adapter", "model", "eval"]


@dataclass(frozen=True)
class StageSpec:
    """One stage of the graph: what it is called, what runs it, what it reads and what it makes."""

    name: str
    run: Callable[[StageCall], StageOutcome]
    doc: str  # what it does, one line (the plan and the docs show it)
    inputs: Mapping[str, str] = field(default_factory=dict)  # input name -> the stage that makes it
    # input name -> whether the recipe needs it (an input not listed here is always read)
    when: Mapping[str, Callable[[Any], bool]] = field(default_factory=dict)
    section: str | None = None  # its own recipe section (dotted), what `call.cfg` returns
    uses: tuple[str, ...] = ()  # every other recipe setting it reads (dotted), model settings included
    output: Output = "adapter"
    evaluated: bool = False  # held-out evaluation of this stage's model (eval_<name>) in its flows
    retries: int = 0  # a failure may be retried this many times (I/O-like stages; training is resumed instead)

    def inputs_for(self, recipe: Any) -> dict[str, str]:
        """The inputs this recipe makes the stage read (None: only those every recipe makes it read)."""
        return {n: src for n, src in self.inputs.items()
                if n not in self.when or (recipe is not None and self.when[n](recipe))}

    def settings(self) -> tuple[str, ...]:
        """Every recipe setting in the stage's key: its section first, then what it uses."""
        return ((self.section,) if self.section else ()) + self.uses


def setting(recipe: Any, path: str) -> Any:
    """The recipe value at a dotted path (`model.lora`, `distill.rl`, `seed`)."""
    value: Any = recipe
    for part in path.split("."):
        value = getattr(value, part)
    return value


def key_config(spec: StageSpec, recipe: Any) -> dict[str, Any]:
    """The part of the recipe a stage's key covers: each declared setting, resolved to JSON."""
    out = {}
    for path in spec.settings():
        value = setting(recipe, path)
        out[path] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return out


# --- code version ------------------------------------------------------------------------------


def _module_file(module: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(module)
    return Path(found.origin)


def _project_imports(path: Path, package: str) -> set[str]:
    """Modules of `package` that the file at `path` imports (absolute imports, as this project writes them)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:
                found |= {f"{package}.{a.name}" for a in node.names}
            elif node.module.split(".")[0] == package:
                found.add(node.module)
    return found


@functools.cache
def code_files(run: Callable[..., Any]) -> tuple[str, ...]:
    """The source files whose code a stage runs: the library, and the stage function's module with
    every module of its package it imports (transitively), relative to the project root."""
    module = inspect.getmodule(run)
    if module is None:
        raise ValueError(f"{run!r}: cannot tell which module defines it")
    package = module.__name__.split(".")[0]
    todo, seen = [module.__name__, package], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_project_imports(_module_file(name), package) - seen)
    own = {_module_file(name).resolve().relative_to(PROJECT_ROOT).as_posix() for name in seen}
    return tuple(sorted(set(package_files(LIBRARY_PACKAGES)) | own))


def code_version(spec: StageSpec, root: Path = PROJECT_ROOT) -> str:
    """The code part of a stage's cache key (`root`: where the sources are read, for tests). For the
    project itself it is read once per process, so one run sees one version of its code."""
    if root == PROJECT_ROOT:
        return _project_code_version(spec.run)
    return source_version(code_files(spec.run), root)


@functools.cache
def _project_code_version(run: Callable[..., Any]) -> str:
    return source_version(code_files(run), PROJECT_ROOT)


# --- the recipe as a stage sees it -------------------------------------------------------------


class UndeclaredSettingError(RuntimeError):
    """A stage read a recipe setting that its StageSpec does not declare (so its key would miss it)."""


class RecipeView:
    """Read-only access to the recipe settings a stage declares; anything else raises."""

    def __init__(self, value: Any, allowed: tuple[str, ...], stage: str, path: str = ""):
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        path = f"{self._path}{name}"
        value = getattr(self._value, name)
        if any(path == a or path.startswith(a + ".") for a in self._allowed):
            return value
        if any(a.startswith(path + ".") for a in self._allowed):
            return RecipeView(value, self._allowed, self._stage, path + ".")
        raise UndeclaredSettingError(
            f"stage {self._stage!r} reads recipe setting {path!r}, which its row in stages/graph.py does not "
            f"declare (section/uses: {', '.join(self._allowed) or 'none'}); declare it there so it is part of "
            "the stage's cache key")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the recipe is read-only")


@dataclass(frozen=True)
class StageCall:
    """Everything one call of a stage needs: the recipe (as the stage may see it: a RecipeView of the
    settings it declares), the run store and run id, the stage's declaration, its input references
    by name, and whether to rebuild it regardless."""

    spec: StageSpec
    recipe: Any  # a Recipe, wrapped into a RecipeView on construction
    store: RunStore
    run_id: str
    inputs: Mapping[str, Ref] = field(default_factory=dict)
    force: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, RecipeView):
            # where launched and isolated work runs (the recipe's `distributed:`; core/devices.py): outside
            # the key on purpose, the same processes train the same thing on one machine or several
            object.__setattr__(self, "_placement", getattr(self.recipe, "distributed", None))
            object.__setattr__(self, "recipe", RecipeView(self.recipe, self.spec.settings(), self.spec.name))

    @property
    def cfg(self) -> Any:
        """The stage's own recipe section (None for a stage without one)."""
        return setting(self.recipe, self.spec.section) if self.spec.section else None

    def key(self, inputs: Mapping[str, Ref] | None = None, root: Path = PROJECT_ROOT) -> str:
        """The stage's cache key for these inputs (default: all of the call's inputs), as `run` builds
        it; `root` is where the code is read (for tests)."""
        return cache_key(self.spec.name, key_config(self.spec, self.recipe),
                         self.inputs if inputs is None else inputs, code_version(self.spec, root))

    def run(self, build: Callable[[Path], StageResult | None], *, inputs: Mapping[str, Ref] | None = None,
            needs_bytes: int | None = None) -> StageOutcome:
        """Build the stage in the run store (or reuse it); `inputs` narrows the call's inputs to the
        ones this build really reads (they, not the others, are in its key)."""
        with devices.placement(getattr(self, "_placement", None)):
            return self.store.run_stage(self.run_id, self.spec.name, key_config(self.spec, self.recipe),
                                        self.inputs if inputs is None else inputs, build,
                                        code=code_version(self.spec), kind=self.spec.output, force=self.force,
                                        needs_bytes=needs_bytes)
