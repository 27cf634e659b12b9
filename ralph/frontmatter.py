"""A plan's YAML front matter: its values and the line each key sits on.

The lines let a wrong setting be reported as `plan.md:4: ...`, pointing at
the key the user has to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ralph.errors import PlanError

KeyPath = tuple[str, ...]
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class FrontMatter:
    values: dict[str, Any] = field(default_factory=dict)
    # 1-based plan line of every key of the mapping and of mappings nested in it
    lines: dict[KeyPath, int] = field(default_factory=dict)


def read_front_matter(source: str, first_line: int, path: Path) -> FrontMatter:
    """Parse the YAML between the `---` lines; `first_line` is where it starts."""
    loader = yaml.SafeLoader(source)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_unique(node, first_line, path)
        values = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        raise _yaml_error(error, first_line, path) from None
    except RecursionError:
        # PyYAML composes nested lists and mappings by recursion.
        raise PlanError(
            f"{path}:{first_line}: the front matter nests lists or mappings too "
            "deep to read; flatten it"
        ) from None
    finally:
        loader.dispose()

    if values is None:
        return FrontMatter()
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        kind = "list" if isinstance(values, list) else "single value"
        raise PlanError(
            f"{path}:{first_line}: the front matter is a {kind}, not a mapping of "
            "keys to values; write it as `key: value` lines or remove it"
        )
    lines = {
        (*prefix, str(key.value)): key.start_mark.line + first_line
        for mapping, prefix in _mappings(node, (), set())
        for key, _ in mapping.value
    }
    return FrontMatter(
        values={str(key): value for key, value in values.items()}, lines=lines
    )


def _mappings(
    node: yaml.Node, prefix: KeyPath, seen: set[int]
) -> Iterator[tuple[yaml.MappingNode, KeyPath]]:
    """Each mapping under `node` once, with the keys that lead to it.

    Only mappings nested in mappings count; `seen` stops an alias that makes
    the tree a loop, such as `a: &x {b: *x}`.
    """
    if not isinstance(node, yaml.MappingNode) or id(node) in seen:
        return
    seen.add(id(node))
    yield node, prefix
    for key, value in node.value:
        yield from _mappings(value, (*prefix, str(key.value)), seen)


def _check_unique(node: yaml.Node, first_line: int, path: Path) -> None:
    """Refuse a key given twice in one mapping of ralph's or another tool's.

    PyYAML keeps the last value without a word, where other YAML readers keep
    the first or refuse the file. This runs on the composed tree, before
    `<<` merges copy keys in, so a merge and a key of the same name is no
    repeat.
    """
    for mapping, prefix in _mappings(node, (), set()):
        seen: dict[str, int] = {}
        for key, _ in mapping.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                continue
            # By the text, as ralph reads keys: `1` and `"1"` are one key to it.
            name, line = str(key.value), key.start_mark.line + first_line
            if name in seen:
                first, dotted = seen[name], ".".join((*prefix, name))
                where = f"lines {first} and" if first < line else "line"
                raise PlanError(
                    f"{path}:{line}: {dotted} is set twice in the front matter, "
                    f"on {where} {line}; keep one of them"
                )
            seen[name] = line


def _yaml_error(error: yaml.YAMLError, first_line: int, path: Path) -> PlanError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = first_line + mark.line if mark is not None else first_line
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return PlanError(
        f"{path}:{line}: the front matter is not valid YAML ({problem}); "
        "fix it or remove the lines between the `---` markers"
    )
