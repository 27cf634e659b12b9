"""The tools the model works with in an attempt: bash, the editor, finish_step.

`bash` and `str_replace_based_edit_tool` are Anthropic's own client tools,
which the models are trained on; ralph runs them here, in the workspace.
`finish_step` is ralph's: it carries the attempt's report. Every input is
checked against its schema first, and every failure, a refused path
included, comes back as an error result the model can read and act on.
Commands pass the command policy (`ralph.policy`) and then run in the
sandbox (`ralph.sandbox`) when there is one.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from ralph.commands import OUTPUT_LIMIT, run_command
from ralph.config import Settings
from ralph.guard import GuardError, check_single_link, resolve_inside, scrub_env
from ralph.policy import check_command
from ralph.sandbox import Sandbox, check_read_only_possible

BASH = "bash"
EDITOR = "str_replace_based_edit_tool"
FINISH = "finish_step"

FILE_LIMIT = 2 * 1024 * 1024
SNIPPET_LINES = 4
LINE_ENDS = "\r\n"

FINISH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["done", "blocked"]},
        "summary": {"type": "string", "minLength": 1},
        "notes": {"type": "string"},
    },
    "required": ["status", "summary"],
    "additionalProperties": False,
}

BASH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "restart": {"type": "boolean"}},
    "additionalProperties": False,
}


def needs(command: str, *fields: str) -> dict[str, Any]:
    """Schema clause: editor `command` requires `fields`."""
    return {
        "if": {"properties": {"command": {"const": command}}},
        "then": {"required": list(fields)},
    }


EDITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"enum": ["view", "create", "str_replace", "insert"]},
        "path": {"type": "string"},
        "view_range": {
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 2,
            "maxItems": 2,
        },
        "max_characters": {"type": "integer", "minimum": 1},
        "file_text": {"type": "string"},
        "old_str": {"type": "string"},
        "new_str": {"type": "string"},
        "insert_line": {"type": "integer", "minimum": 0},
        "insert_text": {"type": "string"},
    },
    "required": ["command", "path"],
    "allOf": [
        needs("create", "file_text"),
        needs("str_replace", "old_str"),
        needs("insert", "insert_line", "insert_text"),
    ],
    "additionalProperties": False,
}

SCHEMAS = {BASH: BASH_SCHEMA, EDITOR: EDITOR_SCHEMA, FINISH: FINISH_SCHEMA}
VALIDATORS = {name: Draft202012Validator(schema) for name, schema in SCHEMAS.items()}

FINISH_DESCRIPTION = (
    "End this attempt with its report: status done when the step's work is "
    "complete, blocked when it cannot be done; a summary of what was done or "
    "why not; notes for the steps after this one."
)


@dataclass
class ToolResult:
    content: str
    is_error: bool = False


class ToolFailure(Exception):
    """An expected failure of a tool, reported to the model as an error result."""


def check_input(name: str, input: object) -> str | None:
    """Why `input` is not valid for tool `name`, or None if it is."""
    validator = VALIDATORS.get(name)
    if validator is None:
        return f"unknown tool `{name}`; the tools are {', '.join(SCHEMAS)}"
    error = best_match(validator.iter_errors(input))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"invalid input for {name}{f' at {where}' if where else ''}: {error.message}"


class Toolbox:
    """Runs the model's tool calls in one workspace for one attempt.

    Without a `sandbox` given, the toolbox makes its own from the settings;
    `close` (or the toolbox's end) removes that sandbox's private /tmp.
    """

    def __init__(
        self,
        workspace: Path,
        settings: Settings,
        env: dict[str, str],
        deadline: float | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        self.settings = settings
        # The caller scrubs already; scrubbing again costs nothing and is safer.
        self.env = scrub_env(env, settings.env_allow)
        self.deadline = deadline
        check_read_only_possible(settings)
        self.closer: Callable[[], object] = lambda: None
        if sandbox is None:
            sandbox = Sandbox(settings, self.workspace)
            # A sandbox of the toolbox's own, private /tmp and all, ends with it.
            self.closer = weakref.finalize(self, sandbox.close)
        self.sandbox = sandbox
        self.runners: dict[str, Callable[[dict[str, Any]], ToolResult]] = {
            BASH: self.bash,
            EDITOR: self.edit,
            FINISH: lambda _: ToolResult("the report is recorded; the attempt ends"),
        }

    def close(self) -> None:
        """Remove the private /tmp of the toolbox's own sandbox, if it made one."""
        self.closer()

    def definitions(self) -> list[dict[str, Any]]:
        return [
            {"type": "bash_20250124", "name": BASH},
            {"type": "text_editor_20250728", "name": EDITOR},
            {
                "name": FINISH,
                "description": FINISH_DESCRIPTION,
                "input_schema": FINISH_SCHEMA,
            },
        ]

    def run(self, name: str, input: object) -> ToolResult:
        """Run one tool call; never raises for anything the model sent."""
        problem = check_input(name, input)
        if problem is not None or not isinstance(input, dict):
            return ToolResult(problem or "the input must be an object", True)
        try:
            return self.runners[name](input)
        except (GuardError, ToolFailure) as exc:
            return ToolResult(str(exc), True)
        except UnicodeDecodeError:
            return ToolResult("the file is not UTF-8 text; use bash for it", True)
        except OSError as exc:
            return ToolResult(f"{name} failed: {exc}", True)

    def bash(self, input: dict[str, Any]) -> ToolResult:
        if input.get("restart"):
            return ToolResult(
                "restarted: every command runs in a fresh bash in the workspace, "
                "so there was no session state to reset"
            )
        command = input.get("command", "")
        if not command.strip():
            return ToolResult("bash needs a command", True)
        refused = check_command(command, self.workspace, self.env)
        if refused is not None:
            return ToolResult(f"not run: {refused}", True)

        argv = self.sandbox.wrap(["bash", "-c", command])
        timeout = self.command_timeout()
        result = run_command(argv, self.workspace, self.env, timeout, display=command)
        output = result.output if result.output.strip() else "(no output)"
        if result.timed_out:
            head = f"timed out after {result.seconds:.0f}s; the command was killed"
            return ToolResult(f"{head}\n{output}", True)
        return ToolResult(f"exit code {result.exit_code}\n{output}")

    def command_timeout(self) -> float:
        timeout = self.settings.command_timeout
        if self.deadline is not None:
            timeout = min(timeout, max(1.0, self.deadline - time.monotonic()))
        return timeout

    def edit(self, input: dict[str, Any]) -> ToolResult:
        path = resolve_inside(self.workspace, input["path"])
        command = input["command"]
        if command == "view":
            return self.view(path, input)
        if self.settings.read_only:
            raise ToolFailure(
                f"{command} is refused: this run is read-only, so the editor "
                "only views files"
            )
        if command == "create":
            return self.create(path, input["file_text"])
        if command == "str_replace":
            return self.replace(path, input["old_str"], input.get("new_str", ""))
        return self.insert(path, input["insert_line"], input["insert_text"])

    def shown(self, path: Path) -> str:
        return str(path.relative_to(self.workspace)) if path != self.workspace else "."

    def view(self, path: Path, input: dict[str, Any]) -> ToolResult:
        limit = input.get("max_characters", OUTPUT_LIMIT)
        if path.is_dir():
            return ToolResult(self.listing(path, limit))
        if not path.is_file():
            raise ToolFailure(f"{self.shown(path)} does not exist")
        start, end = input.get("view_range", [1, -1])
        if start < 1 or (end != -1 and end < start):
            raise ToolFailure(
                f"invalid view_range [{start}, {end}]: lines count from 1, and the "
                "end is -1 (to the end of the file) or not before the start"
            )
        return ToolResult(self.numbered(path, start, end, limit) or "(empty file)")

    def numbered(self, path: Path, start: int, end: int, limit: int) -> str:
        """Lines start..end with their numbers, streamed so big files stay unread."""
        shown: list[str] = []
        size = 0
        count = 0
        with path.open(encoding="utf-8", newline="") as handle:
            for count, line in enumerate(handle, start=1):
                if count < start:
                    continue
                if end != -1 and count > end:
                    break
                entry = f"{count:6}\t{line.rstrip(LINE_ENDS)}"
                if size + len(entry) > limit:
                    shown.append(f"[cut at {limit} characters; view from line {count}]")
                    break
                shown.append(entry)
                size += len(entry) + 1
        if start > max(count, 1):
            raise ToolFailure(
                f"{self.shown(path)} has {count} lines; {start} is past it"
            )
        return "\n".join(shown)

    def listing(self, root: Path, limit: int) -> str:
        lines = [f"{self.shown(root)}: up to 2 levels deep, hidden entries left out"]
        size = len(lines[0])
        for entry in walk(root, depth=2):
            line = self.shown(entry) + ("/" if entry.is_dir() else "")
            if size + len(line) > limit:
                lines.append(f"[cut at {limit} characters]")
                break
            lines.append(line)
            size += len(line) + 1
        return "\n".join(lines)

    def create(self, path: Path, text: str) -> ToolResult:
        if path.is_dir():
            raise ToolFailure(f"{self.shown(path)} is a directory")
        verb = "overwrote" if path.exists() else "created"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write(path, text)
        return ToolResult(f"{verb} {self.shown(path)} ({line_count(text)})")

    def replace(self, path: Path, old: str, new: str) -> ToolResult:
        text = self.read_whole(path)
        if not old:
            raise ToolFailure("old_str is empty; give the exact text to replace")
        if text.count(old) == 0 and "\r\n" in text:
            # Models write \n; a CRLF file still matches if its endings are used.
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
        found = text.count(old)
        if found != 1:
            raise ToolFailure(self.not_once(path, text, old, found))

        at = text.index(old)
        edited = text[:at] + new + text[at + len(old) :]
        self.write(path, edited)
        first = text.count("\n", 0, at) + 1
        last = first + new.count("\n")
        return ToolResult(f"edited {self.shown(path)}:\n{snippet(edited, first, last)}")

    def not_once(self, path: Path, text: str, old: str, found: int) -> str:
        if found == 0:
            return (
                f"old_str occurs 0 times in {self.shown(path)}; view the file and "
                "copy the text exactly, whitespace included"
            )
        lines = [str(text.count("\n", 0, at) + 1) for at in occurrences(text, old)]
        return (
            f"old_str occurs {found} times in {self.shown(path)} (lines "
            f"{', '.join(lines)}); include more of the text around it so it "
            "occurs exactly once"
        )

    def insert(self, path: Path, after: int, new: str) -> ToolResult:
        text = self.read_whole(path)
        lines = text.splitlines(keepends=True)
        if after > len(lines):
            raise ToolFailure(
                f"insert_line {after} is past the end: {self.shown(path)} has "
                f"{len(lines)} lines"
            )

        ending = "\r\n" if "\r\n" in text else "\n"
        if after and not lines[after - 1].endswith(("\n", "\r")):
            lines[after - 1] += ending
        if not new.endswith(("\n", "\r")):
            new += ending
        edited = "".join(lines[:after]) + new + "".join(lines[after:])
        self.write(path, edited)
        last = after + count_lines(new)
        return ToolResult(
            f"inserted after line {after} of {self.shown(path)}:\n"
            f"{snippet(edited, after + 1, last)}"
        )

    def write(self, path: Path, text: str) -> None:
        check_single_link(path)
        path.write_bytes(text.encode("utf-8"))

    def read_whole(self, path: Path) -> str:
        if not path.is_file():
            raise ToolFailure(f"{self.shown(path)} does not exist or is not a file")
        size = path.stat().st_size
        if size > FILE_LIMIT:
            raise ToolFailure(
                f"{self.shown(path)} is {size} bytes, more than the editor reads "
                f"whole ({FILE_LIMIT} bytes); use bash for it"
            )
        return path.read_bytes().decode("utf-8")


def walk(root: Path, depth: int) -> Iterator[Path]:
    """Entries under root, `depth` levels deep, sorted, hidden ones left out."""
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        yield entry
        if depth > 1 and entry.is_dir() and not entry.is_symlink():
            yield from walk(entry, depth - 1)


def occurrences(text: str, part: str) -> Iterator[int]:
    at = text.find(part)
    while at != -1:
        yield at
        at = text.find(part, at + 1)


def count_lines(text: str) -> int:
    return len(text.splitlines())


def line_count(text: str) -> str:
    count = count_lines(text)
    return f"{count} line" if count == 1 else f"{count} lines"


def snippet(text: str, first: int, last: int) -> str:
    """Lines first..last with a few around them, numbered, to show an edit."""
    lines = text.splitlines()
    low = max(1, first - SNIPPET_LINES)
    high = min(len(lines), max(last, first) + SNIPPET_LINES)
    return "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(low, high + 1))
