"""A plan's YAML front matter: its values and the line each key sits on.

The lines let a wrong setting be reported as `plan.md:4: ...`, pointing at
the key the user has to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ralph.errors import PlanError

KeyPath = tuple[str, ...]


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
        values = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        raise _yaml_error(error, first_line, path) from None
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
    return FrontMatter(
        values={str(key): value for key, value in values.items()},
        lines=dict(_key_lines(node, (), first_line)),
    )


def _key_lines(
    node: yaml.MappingNode, prefix: KeyPath, first_line: int
) -> list[tuple[KeyPath, int]]:
    found: list[tuple[KeyPath, int]] = []
    for key_node, value_node in node.value:
        path = (*prefix, str(key_node.value))
        found.append((path, key_node.start_mark.line + first_line))
        if isinstance(value_node, yaml.MappingNode):
            found.extend(_key_lines(value_node, path, first_line))
    return found


def _yaml_error(error: yaml.YAMLError, first_line: int, path: Path) -> PlanError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = first_line + mark.line if mark is not None else first_line
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return PlanError(
        f"{path}:{line}: the front matter is not valid YAML ({problem}); "
        "fix it or remove the lines between the `---` markers"
    )
