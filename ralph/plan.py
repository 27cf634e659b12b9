"""Plans: the steps of a markdown plan, ticking their boxes, notes under them.

A step is exactly a list item that GitHub's renderer, cmark-gfm, shows as a
task-list checkbox. cmark-gfm decides that on the item's raw source line:
after blanks it must hold the list marker and then `[ ]`, `[x]` or `[X]`
and a blank. So an item behind a `>` or behind a second marker on the same
line is no step, and a `[x]` anywhere on the line shows the box ticked.
ralph keeps to these rules, so what it runs is what a reader of the plan
sees on GitHub.

Every edit is made on the file's bytes: a tick changes one byte, a note
inserts lines, and nothing else in the file moves.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

from ralph.errors import PlanError
from ralph.frontmatter import KeyPath, read_front_matter
from ralph.markdown import MARKDOWN, MAX_NESTING, NestingError

MAX_PLAN_BYTES = 10 * 1024 * 1024
_FILE_KINDS = (
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_TEXT_NEWLINE = re.compile(r"\r\n|\r|\n")
# cmark-gfm's task-list scanner, matched from the start of the raw line.
_BOX = re.compile(r"[ \t\v\f]*(?:[-+*]|[0-9]+.)[ \t\v\f]+\[([ xX])\][ \t\v\f]")
_MARKER = re.compile(r"[ \t]*(?:[-+*]|[0-9]{1,9}[.)])")
# `Verify: cmd`, also as a bullet or with the label in bold
_VERIFY = re.compile(
    r"(?:[-*+]\s+)?(?:verify:|(\*\*|__)verify(?::\1|\1:))\s*(?P<command>.*)",
    re.IGNORECASE,
)
# `---` then a `key:` line: front matter, whether or not it is closed.
_UNCLOSED_FRONT = re.compile(r"---[ \t]*\r?\n[ \t]*[A-Za-z_][\w-]*[ \t]*:")
_QUOTE = re.compile(r" {0,3}> ?")
_NOTE_START = "ralph:"
# A note line starting with one of these could open a block inside the quote.
_PLAIN_START = re.compile(r"[^\s\\\-+*#>=_~`<|:\[0-9]")


@dataclass(frozen=True)
class Step:
    number: int
    line: int
    offset: int
    done: bool
    title: str
    body: str
    verify: str | None
    phase: str | None
    depth: int
    parent: int | None
    children: tuple[int, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    path: Path
    data: bytes
    front: dict[str, Any]
    title: str | None
    context: str
    steps: tuple[Step, ...]
    # where each front matter key sits, for messages that name the line
    front_lines: dict[KeyPath, int] = field(default_factory=dict)

    def step(self, number: int) -> Step:
        if 1 <= number <= len(self.steps):
            return self.steps[number - 1]
        raise PlanError(
            f"{self.path} has no step {number}; its steps are numbered "
            f"1 to {len(self.steps)} (see `ralph parse`)"
        )

    def next_step(self) -> Step | None:
        """The first open step whose child steps are all done.

        A ticked box is done with everything under it, so open steps below
        a ticked one are never returned.
        """
        for step in self.steps:
            if step.done or self._under_ticked(step):
                continue
            if all(self.step(child).done for child in step.children):
                return step
        return None

    def is_complete(self) -> bool:
        return self.next_step() is None

    def _under_ticked(self, step: Step) -> bool:
        parent = step.parent
        while parent is not None:
            if self.step(parent).done:
                return True
            parent = self.step(parent).parent
        return False


@dataclass(frozen=True)
class _Line:
    start: int
    end: int
    eol: bytes
    text: str


@dataclass(frozen=True)
class _Item:
    """Where a step's list item sits, for reading it and for notes."""

    node: SyntaxTreeNode
    number: int
    line: int
    offset: int
    done: bool
    title: str
    indent: str
    column: int
    parent: int | None
    depth: int
    phase: str | None


def load_plan(path: Path) -> Plan:
    """Read and parse the plan file at `path`."""
    try:
        info = path.stat()
        _check_regular(path, info.st_mode)
        if info.st_size > MAX_PLAN_BYTES:
            raise PlanError(
                f"{path} has {info.st_size} bytes, more than a plan may have "
                "(10 MB); split it into smaller plans"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan; check the path") from None
    except OSError as error:
        raise PlanError(f"{path}: cannot read the plan: {error.strerror}") from None
    return parse_plan(data, path)


def _check_regular(path: Path, mode: int) -> None:
    # Reading a FIFO or a device could wait forever or never end, and ticks
    # are written back by replacing the file, so only a regular file will do.
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise PlanError(f"{path} is a directory; pass the plan's markdown file")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "special file")
    raise PlanError(
        f"{path} is a {kind}, not a regular file; ralph reads a plan whole and "
        "writes its ticks back into it, so save the plan to a file and pass that"
    )


def parse_plan(data: bytes, path: Path) -> Plan:
    """Parse a plan's bytes; `path` only names the plan in messages."""
    return _read(data, path)[0]


def tick(data: bytes, step: Step) -> bytes:
    """Tick the step's box: the space in `[ ]` becomes `x`, one byte."""
    if step.done:
        raise PlanError(f"step {step.number} ({step.title!r}) is already done")
    if data[step.offset - 1 : step.offset + 2] != b"[ ]":
        raise PlanError(
            f"step {step.number} is no longer an open box at line {step.line}; "
            "the plan changed since it was read, so read it again"
        )
    return data[: step.offset] + b"x" + data[step.offset + 1 :]


def add_note(data: bytes, step: Step, text: str) -> bytes:
    """Insert a `> ralph: ...` note after the step's own details.

    The note goes in the step's indentation and line endings, before its
    first child step. Each placement is parsed again and kept only if every
    step reads as before and the note reads back whole.
    """
    plan, items = _read(data, Path("plan"))
    item = _current_item(items, step)
    children = [items[c - 1].node for c in plan.steps[item.number - 1].children]
    note = _note_text(text)
    lines = _split_lines(data)

    # After the details, else after the title's paragraph, else after its line.
    title_end = _end(item.node.children[0]) - 1
    anchors = (_body_end(item, children, lines), title_end, item.line)
    for anchor in dict.fromkeys(anchors):
        for form in ("plain", "closed", "spaced", "separated", "apart"):
            block = _note_block(note, item.indent, form)
            candidate = _insert_lines(data, lines, anchor, block)
            if _same_but_note(plan, _read(candidate, plan.path)[0], step, note):
                return candidate
    raise PlanError(
        f"cannot place a note under step {step.number} (line {step.line}) "
        "without changing the plan's steps; close any open code block or "
        "HTML block in its details and run again"
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Replace the file so that a crash leaves either the old or the new one."""
    target = path.resolve()
    mode = target.stat().st_mode & 0o7777 if target.exists() else _new_file_mode()
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def is_regular_file(path: Path) -> bool:
    """Whether a regular file stands at `path` itself, not behind a link."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def put_back(path: Path, data: bytes) -> None:
    """Write `data` at `path` as a fresh regular file, whatever stood there.

    What an attempt left at the plan's path is removed first, never written
    through: a symlink may point outside the work tree, a FIFO would hang.
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()
    write_atomic(path, data)


def _new_file_mode() -> int:
    # The umask can only be read by setting it; put it straight back.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(data: bytes, path: Path) -> tuple[Plan, list[_Item]]:
    text = _decode(data, path)
    lines = _split_lines(data)
    tokens = _tokens(text.removeprefix("\ufeff"), path)

    front: dict[str, Any] = {}
    front_lines: dict[KeyPath, int] = {}
    front_end = 0
    if tokens and tokens[0].type == "front_matter" and tokens[0].map:
        matter = read_front_matter(tokens[0].content, tokens[0].map[0] + 2, path)
        front, front_lines, front_end = matter.values, matter.lines, tokens[0].map[1]
    elif _UNCLOSED_FRONT.match(text.removeprefix("\ufeff")):
        raise PlanError(
            f"{path}:1: front matter opens with `---` but no `---` line closes "
            "it; add the closing line after the settings"
        )

    items, headings = _scan(SyntaxTreeNode(tokens), lines)
    children = _children(items)
    steps = tuple(
        _step(number, item, [items[c - 1] for c in children[number]], lines)
        for number, item in enumerate(items, start=1)
    )
    title_node = next((h for h in headings if h.tag == "h1"), None)
    plan = Plan(
        path=path,
        data=data,
        front=front,
        title=_inline_text(title_node) if title_node else None,
        context=_context(lines, front_end, items, headings, title_node),
        steps=steps,
        front_lines=front_lines,
    )
    return plan, items


def _tokens(text: str, path: Path) -> list[Token]:
    try:
        return MARKDOWN.parse(text)
    except NestingError as error:
        raise PlanError(
            f"{path}:{error.line + 1}: the plan nests lists and quotes deeper "
            f"than ralph reads (more than {(MAX_NESTING - 1) // 2} lists, or "
            f"{MAX_NESTING - 1} quotes, one inside another); move the deeper "
            "steps up a level or into a plan of their own"
        ) from None


def _decode(data: bytes, path: Path) -> str:
    if b"\0" in data:
        line = _line_number(data, data.index(b"\0"))
        raise PlanError(
            f"{path}:{line}: holds a NUL byte, so it is binary, not a markdown "
            "plan; pass the plan's text file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _line_number(data, error.start)
        raise PlanError(
            f"{path}:{line}: the plan is not valid UTF-8 (byte "
            f"0x{data[error.start]:02x}); save it as UTF-8"
        ) from None


def _line_number(data: bytes, offset: int) -> int:
    return len(_NEWLINE.findall(data, 0, offset)) + 1


def _split_lines(data: bytes) -> list[_Line]:
    lines, start = [], 0
    for match in _NEWLINE.finditer(data):
        text = data[start : match.start()].decode("utf-8")
        lines.append(_Line(start, match.start(), match.group(), text))
        start = match.end()
    if start < len(data):
        lines.append(_Line(start, len(data), b"", data[start:].decode("utf-8")))
    return lines


def _scan(
    root: SyntaxTreeNode, lines: list[_Line]
) -> tuple[list[_Item], list[SyntaxTreeNode]]:
    """Find the steps and headings in document order."""
    items: list[_Item] = []
    headings: list[SyntaxTreeNode] = []

    def visit(node: SyntaxTreeNode, parent: int | None, depth: int) -> None:
        if node.type == "heading":
            headings.append(node)
        if node.type == "list_item":
            phase = _inline_text(headings[-1]) if headings else None
            item = _as_step(node, lines, (len(items) + 1, parent, depth), phase)
            if item is not None:
                items.append(item)
                parent, depth = item.number, depth + 1
        for child in node.children:
            if child.type != "inline":
                visit(child, parent, depth)

    visit(root, None, 0)
    return items, headings


def _as_step(
    node: SyntaxTreeNode,
    lines: list[_Line],
    place: tuple[int, int | None, int],
    phase: str | None,
) -> _Item | None:
    """The item as a step, if cmark-gfm would render its box.

    `place` is the number the step would get, its parent's and its depth.
    """
    first = node.children[0] if node.children else None
    if first is None or first.type not in ("paragraph", "heading", "table"):
        return None
    if node.map is None or first.map is None or first.map[0] != node.map[0]:
        return None
    line = lines[node.map[0]]
    box = _BOX.match(line.text)
    if box is None:
        return None

    indent, column = _content_indent(line.text)
    done = "[x]" in line.text or "[X]" in line.text
    offset = line.start + len(line.text[: box.start(1)].encode("utf-8"))
    title = line.text[box.end(1) + 1 :].strip()
    number, parent, depth = place
    return _Item(
        node,
        number,
        node.map[0],
        offset,
        done,
        title,
        indent,
        column,
        parent,
        depth,
        phase,
    )


def _content_indent(text: str) -> tuple[str, int]:
    """The whitespace that puts a line into the item's content."""
    marker = _MARKER.match(text)
    assert marker is not None, "a step line starts with its list marker"
    end = marker.end()
    while end < len(text) and text[end] in " \t":
        end += 1
    if _columns(text[:end]) - _columns(text[: marker.end()]) > 4:
        # More than four blanks after the marker: the content starts after one.
        end = marker.end() + 1
    prefix = "".join(c if c in " \t" else " " for c in text[:end])
    return prefix, _columns(prefix)


def _columns(text: str) -> int:
    column = 0
    for char in text:
        column = column + 4 - column % 4 if char == "\t" else column + 1
    return column


def _dedent(text: str, columns: int) -> str:
    column, index = 0, 0
    while index < len(text) and column < columns and text[index] in " \t":
        column = column + 4 - column % 4 if text[index] == "\t" else column + 1
        index += 1
    return " " * max(column - columns, 0) + text[index:]


def _children(items: list[_Item]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {n: [] for n in range(1, len(items) + 1)}
    for number, item in enumerate(items, start=1):
        if item.parent is not None:
            children[item.parent].append(number)
    return children


def _step(number: int, item: _Item, children: list[_Item], lines: list[_Line]) -> Step:
    found = [(q, _note_of(q, item, lines)) for q in item.node.children]
    notes = [(q, text) for q, text in found if text is not None]
    hidden = [child.node for child in children] + [q for q, _ in notes]
    own = [i for i in range(item.line + 1, _end(item.node)) if not _inside(i, hidden)]
    return Step(
        number=number,
        line=item.line + 1,
        offset=item.offset,
        done=item.done,
        title=item.title,
        body=_join(_dedent(lines[i].text, item.column) for i in own),
        verify=_verify(item, hidden, lines),
        phase=item.phase,
        depth=item.depth,
        parent=item.parent,
        children=tuple(c.number for c in children),
        notes=tuple(text for _, text in notes),
    )


def _end(node: SyntaxTreeNode) -> int:
    assert node.map is not None
    return node.map[1]


def _inside(line: int, nodes: list[SyntaxTreeNode]) -> bool:
    return any(n.map is not None and n.map[0] <= line < n.map[1] for n in nodes)


def _join(lines: Any) -> str:
    """Join lines with "\\n", dropping blank lines at both ends."""
    kept = [line.rstrip(" \t") for line in lines]
    while kept and not kept[-1]:
        kept.pop()
    while kept and not kept[0]:
        kept.pop(0)
    return "\n".join(kept)


def _inline_text(heading: SyntaxTreeNode) -> str:
    return heading.children[0].content.strip() if heading.children else ""


def _verify(
    item: _Item, hidden: list[SyntaxTreeNode], lines: list[_Line]
) -> str | None:
    """The command of the first `Verify:` line of the step's own text."""
    for paragraph in _own_paragraphs(item.node, hidden):
        assert paragraph.map is not None
        for index in range(paragraph.map[0], paragraph.map[1]):
            if index == item.line:
                continue
            found = _VERIFY.fullmatch(_dedent(lines[index].text, item.column).strip())
            if found and found["command"]:
                return _unquote(found["command"])
    return None


def _own_paragraphs(
    node: SyntaxTreeNode, hidden: list[SyntaxTreeNode]
) -> list[SyntaxTreeNode]:
    found = []
    for child in node.children:
        if child in hidden or child.type == "inline":
            continue
        if child.type == "paragraph":
            found.append(child)
        found.extend(_own_paragraphs(child, hidden))
    return found


def _unquote(command: str) -> str | None:
    quoted = re.fullmatch(r"(`+)\s*(.*?)\s*\1", command.strip())
    value = quoted.group(2) if quoted else command.strip()
    return value or None


def _context(
    lines: list[_Line],
    start: int,
    items: list[_Item],
    headings: list[SyntaxTreeNode],
    title: SyntaxTreeNode | None,
) -> str:
    """The text every step sees: from the top to the first step or section."""
    ends = [item.line for item in items[:1]]
    ends += [h.map[0] for h in headings if h is not title and h.map is not None][:1]
    end = min(ends, default=len(lines))
    skip = [title] if title is not None else []
    kept = (lines[i].text for i in range(start, end) if not _inside(i, skip))
    return _join(text.removeprefix("\ufeff") for text in kept)


def _note_of(node: SyntaxTreeNode, item: _Item, lines: list[_Line]) -> str | None:
    """The text of a note ralph wrote, if this block is one."""
    if node.type != "blockquote" or node.map is None:
        return None
    texts = []
    for index in range(node.map[0], node.map[1]):
        text = _dedent(lines[index].text, item.column)
        quote = _QUOTE.match(text)
        texts.append(text[quote.end() :] if quote else text)
    if not texts[0].startswith(_NOTE_START):
        return None
    first = texts[0][len(_NOTE_START) :].removeprefix(" ")
    return _join([first, *(t.removeprefix("\\") for t in texts[1:])])


def _note_text(text: str) -> str:
    clean = text.replace("\0", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    note = _join(_TEXT_NEWLINE.split(clean))
    if not note:
        raise ValueError("a note needs some text")
    return note


def _note_block(note: str, indent: str, form: str) -> list[str]:
    """The note's lines in one of five forms, each safer than the one before."""
    first, *rest = note.split("\n")
    block = [f"{indent}> {_NOTE_START} {first}"]
    block += [f"{indent}> {_escape(line)}" if line else f"{indent}>" for line in rest]
    if form in ("closed", "separated", "apart"):
        # An empty quote line closes the note's paragraph, so the next line
        # cannot continue it lazily.
        block.append(f"{indent}>")
    if form in ("spaced", "separated", "apart"):
        # A blank line keeps the note out of a quote or HTML block above it,
        block.insert(0, "")
    if form == "apart":
        # and one after it keeps a quote below from running on from the note.
        block.append("")
    return block


def _escape(line: str) -> str:
    return line if _PLAIN_START.match(line) else "\\" + line


def _current_item(items: list[_Item], step: Step) -> _Item:
    # Lines above the step may have moved, but it must still be the same step.
    if step.number > len(items) or items[step.number - 1].title != step.title:
        raise PlanError(
            f"step {step.number} ({step.title!r}) is not in the plan any more; "
            "the plan changed since it was read, so read it again"
        )
    return items[step.number - 1]


def _body_end(item: _Item, children: list[SyntaxTreeNode], lines: list[_Line]) -> int:
    """The last non-blank line of the step's own text, before any child step."""
    boundary = _end(item.node)
    for block in item.node.children[1:]:
        if block.map is not None and any(c in children for c in _tree(block)):
            boundary = block.map[0]
            break
    last = boundary - 1
    while last > item.line and not lines[last].text.strip(" \t"):
        last -= 1
    return last


def _tree(node: SyntaxTreeNode) -> list[SyntaxTreeNode]:
    return [node, *(d for c in node.children if c.type != "inline" for d in _tree(c))]


def _insert_lines(
    data: bytes, lines: list[_Line], anchor: int, block: list[str]
) -> bytes:
    line = lines[anchor]
    eol = line.eol or next((x.eol for x in lines if x.eol), b"\n")
    encoded = [text.encode("utf-8") for text in block]
    if line.eol:
        at = line.end + len(line.eol)
        return data[:at] + b"".join(text + eol for text in encoded) + data[at:]
    return (
        data[: line.end] + b"".join(eol + text for text in encoded) + data[line.end :]
    )


def _same_but_note(before: Plan, after: Plan, step: Step, note: str) -> bool:
    """Whether `after` is `before` with one more note under `step`."""
    whole = (before.title, before.context, before.front, len(before.steps))
    if whole != (after.title, after.context, after.front, len(after.steps)):
        return False
    for old, new in zip(before.steps, after.steps, strict=True):
        notes = (*old.notes, note) if old.number == step.number else old.notes
        if _comparable(old) != _comparable(new) or new.notes != notes:
            return False
    return True


def _comparable(step: Step) -> tuple[Any, ...]:
    return (
        step.number,
        step.done,
        step.title,
        step.body,
        step.verify,
        step.phase,
        step.depth,
        step.parent,
        step.children,
    )
