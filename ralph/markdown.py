"""A markdown-it parser that splits blocks where cmark-gfm does.

ralph's steps must be exactly the boxes GitHub renders, and GitHub renders
with cmark-gfm. markdown-it-py reads CommonMark much as cmark does; the
rules here close the gaps that matter for plans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.parser_block import ParserBlock
from markdown_it.rules_block.html_block import HTML_SEQUENCES, html_block
from markdown_it.rules_block.reference import reference
from markdown_it.rules_block.state_block import StateBlock
from mdit_py_plugins.front_matter import front_matter_plugin

# markdown-it reads CommonMark much as cmark does, except where a line that
# misses its container's indent meets an open paragraph. These rules make it
# decide such lines the way cmark does.


def _continues_paragraph(state: StateBlock, line: int) -> bool:
    """Whether the line would carry on an open paragraph, as markdown-it decides."""
    if state.sCount[line] - state.blkIndent > 3 or state.sCount[line] < 0:
        return True
    saved, state.parentType = state.parentType, "paragraph"
    try:
        rules = state.md.block.ruler.getRules("paragraph")
        return not any(rule(state, line, state.lineMax, True) for rule in rules)
    finally:
        state.parentType = saved


def _html_block(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if html_block(state, start, end, silent):
        return True
    # cmark tries block starts on a lazy line, or on a line after a table
    # row, as if no paragraph were open: there a lone tag opens an HTML block.
    free = state.parentType in ("blockquote", "table")
    if not (free or state.sCount[start] < state.blkIndent):
        return False
    if not silent or state.is_code_block(start):
        return False
    text = state.src[state.bMarks[start] + state.tShift[start] : state.eMarks[start]]
    return bool(HTML_SEQUENCES[-1][0].search(text))


def _reference(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if not reference(state, start, end, silent):
        return False
    # cmark reads a link definition as the start of a paragraph, so a line
    # that cannot interrupt a paragraph carries on as its text.
    after = state.line
    if silent or after >= state.lineMax or state.isEmpty(after):
        return True
    if _continues_paragraph(state, after):
        state.line = start
        return False
    return True


class NestingError(Exception):
    """Blocks nest deeper than the parser reads.

    `line` is the 0-based line of the first block it would have dropped.
    """

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line + 1} nests deeper than {MAX_NESTING} levels")
        self.line = line


class _BlockParser(ParserBlock):
    """Keeps the indent of each container being parsed, for `_starts_nothing`.

    Past `maxNesting` markdown-it drops a container's content without a word,
    which would fold deeper boxes into the step above; this raises instead.
    """

    def tokenize(self, state: StateBlock, startLine: int, endLine: int) -> None:
        if state.level >= state.md.options.maxNesting:
            # The test markdown-it makes before it gives up on the lines.
            line = state.skipEmptyLines(startLine)
            if line < endLine and state.sCount[line] >= state.blkIndent:
                raise NestingError(line)
        indents = state.env.setdefault(_INDENTS, [])
        indents.append(state.blkIndent)
        try:
            super().tokenize(state, startLine, endLine)
        finally:
            indents.pop()


def _starts_nothing(rule: Callable[[StateBlock, int, int, bool], bool]) -> Any:
    """Let `rule` interrupt a paragraph only where cmark would try it."""

    def interrupts(state: StateBlock, start: int, end: int, silent: bool) -> bool:
        column = state.sCount[start]
        if silent and state.parentType == "paragraph" and column < state.blkIndent:
            # A lazy line four columns past the container it does sit in
            # would be indented code, which cannot interrupt a paragraph.
            inside = [i for i in state.env.get(_INDENTS, []) if i <= column]
            if column - max(inside, default=0) >= 4:
                return False
        return bool(rule(state, start, end, silent))

    return interrupts


def _commonmark_like_cmark() -> MarkdownIt:
    markdown = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING})
    markdown.enable("table").use(front_matter_plugin)
    parser = _BlockParser()
    parser.ruler = markdown.block.ruler
    markdown.block = parser

    html_alt = ["paragraph", "reference", "blockquote"]
    markdown.block.ruler.at("html_block", _html_block, {"alt": html_alt})
    markdown.block.ruler.at("reference", _reference)
    for rule in list(markdown.block.ruler.__rules__):
        if "paragraph" in rule.alt:
            markdown.block.ruler.at(
                rule.name, _starts_nothing(rule.fn), {"alt": rule.alt}
            )
    return markdown


_INDENTS = "ralph.markdown.indents"
# Levels of blocks a plan may nest: each list counts two (the list and its
# item), each quote one, so 49 lists or 99 quotes fit. The commonmark
# preset's 20 stops at nine lists. Every level costs markdown-it about four
# Python frames, so twice this would come close to the recursion limit.
MAX_NESTING = 100
# The one parser of plans, set up once.
MARKDOWN = _commonmark_like_cmark()
