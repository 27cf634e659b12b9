"""ralph's steps are exactly the boxes GitHub's renderer, cmark-gfm, draws.

cmarkgfm renders each plan with source positions; every `<li>` whose first
child is a checkbox `<input>` is a box on the line its `data-sourcepos`
names. Front matter is blanked first: GitHub shows it as a table, not as
markdown, and ralph reads it as settings.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ralph.plan import parse_plan

FIXTURES = Path(__file__).parent / "fixtures" / "plans"
CORPUS = Path(
    os.environ.get("RALPH_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
NEWLINE = re.compile(r"\r\n|\r|\n")


class _Checkboxes(HTMLParser):
    """Collects (line, checked) of list items that open with a checkbox."""

    def __init__(self) -> None:
        super().__init__()
        self.item_line: int | None = None
        self.boxes: set[tuple[int, bool]] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if self.item_line is not None and tag == "input":
            if found.get("type") == "checkbox":
                self.boxes.add((self.item_line, "checked" in found))
        self.item_line = None
        if tag == "li":
            self.item_line = int(str(found["data-sourcepos"]).split(":")[0])

    def handle_data(self, data: str) -> None:
        self.item_line = None


def github_boxes(text: str) -> set[tuple[int, bool]]:
    html = cmarkgfm.github_flavored_markdown_to_html(
        _without_front_matter(text), Options.CMARK_OPT_SOURCEPOS
    )
    parser = _Checkboxes()
    parser.feed(html)
    parser.close()
    return parser.boxes


def _without_front_matter(text: str) -> str:
    lines = NEWLINE.split(text)
    if lines[0].removeprefix("\ufeff").rstrip() != "---":
        return text
    close = next(
        (i for i, line in enumerate(lines[1:], 1) if line.rstrip() in ("---", "...")),
        None,
    )
    if close is None:
        return text
    endings = NEWLINE.findall(text)
    kept = ["" if i <= close else line for i, line in enumerate(lines)]
    return "".join(
        line + ending for line, ending in zip(kept, [*endings, ""], strict=True)
    )


def nested_task_plan(levels: int) -> str:
    """Task items each inside the one above, every one with a shell block."""
    lines = []
    for depth in range(levels):
        indent = "  " * depth
        lines += [f"{indent}- [ ] d{depth}", f"{indent}  ```sh"]
        lines += [f"{indent}  echo {depth}", f"{indent}  ```"]
    return "\n".join(lines) + "\n"


def ralph_boxes(text: str) -> set[tuple[int, bool]]:
    plan = parse_plan(text.encode("utf-8"), Path("plan.md"))
    return {(step.line, step.done) for step in plan.steps}


def _corpus_plans() -> list[Path]:
    return sorted(CORPUS.glob("*.md")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared plan corpus is absent")
@pytest.mark.parametrize("path", _corpus_plans(), ids=lambda p: p.name)
def test_corpus_plan_steps_are_github_boxes(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")

    assert ralph_boxes(text) == github_boxes(text)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.md")), ids=lambda p: p.name)
def test_fixture_plan_steps_are_github_boxes(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")

    assert ralph_boxes(text) == github_boxes(text)
    assert ralph_boxes(text), "every fixture plan has steps"


def test_the_corpus_is_not_empty_when_present() -> None:
    if CORPUS.is_dir():
        assert len(_corpus_plans()) >= 10


# Markdown shaped like real plans, with the constructs that decide whether a
# line is a box: containers, laziness, code, HTML, tables, headings.

_WORDS = st.sampled_from(
    ["step", "fix it", "`code`", "[x]", "[ ]", "a | b", "*em*", "<b>x</b>", "1.",
     "naïve", "日本語", "- dash", "x", "then", "**bold**", "\\[ ]"]
)  # fmt: skip
_BOX_STARTS = ["[ ] ", "[x] ", "[X] ", "[ ]\t", "", "", "[ ]", "[y] ", "[ ]x", "[-] "]


@st.composite
def _text(draw: st.DrawFn) -> str:
    return " ".join(draw(st.lists(_WORDS, min_size=1, max_size=4)))


@st.composite
def _paragraph(draw: st.DrawFn, depth: int) -> list[str]:
    lead = draw(st.sampled_from(["", "", "[ ] ", "[x] "]))
    return [lead + draw(_text()) for _ in range(draw(st.integers(1, 3)))]


@st.composite
def _heading(draw: st.DrawFn, depth: int) -> list[str]:
    if draw(st.booleans()):
        return ["#" * draw(st.integers(1, 3)) + " " + draw(_text())]
    return [draw(_text()), draw(st.sampled_from(["===", "---", "- - -"]))]


@st.composite
def _fence(draw: st.DrawFn, depth: int) -> list[str]:
    fence = draw(st.sampled_from(["```", "~~~", "````"]))
    body = draw(st.lists(st.sampled_from(["- [ ] in code", "* [x] too", "x"])))
    closing = [fence] if draw(st.integers(0, 5)) else []
    return [fence + draw(st.sampled_from(["", "sh", "md"])), *body, *closing]


@st.composite
def _html(draw: st.DrawFn, depth: int) -> list[str]:
    return draw(
        st.sampled_from(
            [
                ["<div>", "- [ ] inside html", "</div>"],
                ["<!--", "- [ ] commented out", "-->"],
                [
                    "<details>",
                    "<summary>more</summary>",
                    "",
                    "- [ ] shown",
                    "</details>",
                ],
                ["<x-note>", "- [ ] custom tag"],
                ["</div>", "- [x] after a closing tag"],
                ["<br/>"],
            ]
        )
    )


@st.composite
def _table(draw: st.DrawFn, depth: int) -> list[str]:
    rows = draw(
        st.lists(st.sampled_from(["| [ ] x | y |", "| - [ ] a | b |", "c | d"]))
    )
    return ["| a | b |", draw(st.sampled_from(["| --- | --- |", "|-|-|"])), *rows]


@st.composite
def _other(draw: st.DrawFn, depth: int) -> list[str]:
    return draw(
        st.sampled_from(
            [["---"], ["***"], ["    - [ ] indented code"], ["[ref]: /url"], [""]]
        )
    )


@st.composite
def _list(draw: st.DrawFn, depth: int) -> list[str]:
    marker = draw(st.sampled_from(["-", "*", "+", "1.", "1)", "2.", "10."]))
    gap = draw(st.sampled_from([" ", " ", "  ", "    ", "\t", "     "]))
    lines: list[str] = []
    for number in range(draw(st.integers(1, 3))):
        lines += draw(_item(marker, number, gap, depth))
        if draw(st.integers(0, 3)) == 0:
            lines.append("")
    return lines


@st.composite
def _item(draw: st.DrawFn, marker: str, number: int, gap: str, depth: int) -> list[str]:
    if marker[0].isdigit():
        marker = f"{int(marker[:-1]) + number}{marker[-1]}"
    head = f"{marker}{gap}{draw(st.sampled_from(_BOX_STARTS))}{draw(_text())}"
    width = len(marker) + (4 - len(marker) % 4 if gap == "\t" else len(gap))
    indent = " " * (width if width - len(marker) <= 4 else len(marker) + 1)
    lines = [head]
    if draw(st.integers(0, 4)) == 0:
        lines.append(draw(_text()))  # a lazy continuation line
    if depth < 3 and draw(st.booleans()):
        child = draw(_blocks(depth + 1))
        tab = indent == "    " and draw(st.booleans())
        lines += [("\t" if tab else indent) + line if line else "" for line in child]
    return lines


@st.composite
def _quote(draw: st.DrawFn, depth: int) -> list[str]:
    inner = draw(_blocks(depth + 1))
    quoted = ["> " + line if line else ">" for line in inner]
    if draw(st.integers(0, 3)) == 0:
        quoted.append(draw(_text()))  # a lazy line without its `>`
    return quoted


_KINDS = [_paragraph, _heading, _fence, _html, _table, _other, _list, _list, _quote]


@st.composite
def _blocks(draw: st.DrawFn, depth: int = 0) -> list[str]:
    kinds = _KINDS if depth < 3 else _KINDS[:6]
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        lines += draw(draw(st.sampled_from(kinds))(depth))
        if draw(st.booleans()):
            lines.append("")
    return lines


@st.composite
def markdown_documents(draw: st.DrawFn, with_steps: bool = False) -> str:
    """A markdown plan as text, with its own line endings, maybe a BOM."""
    lines = draw(_blocks())
    if with_steps:
        at = draw(st.integers(0, len(lines)))
        steps = ["", "- [ ] step one", "  details", "- [x] step two", ""]
        lines[at:at] = steps
    if lines[0] == "---":
        lines.insert(0, "text")  # a first `---` line opens front matter
    if draw(st.integers(0, 4)) == 0:
        lines = ["---", "title: generated", "tags:", "  - x", "---", *lines]
    ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = ending.join(lines) + draw(st.sampled_from([ending, ""]))
    return ("\ufeff" if draw(st.integers(0, 9)) == 0 else "") + text


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(markdown_documents())
def test_generated_plan_steps_are_github_boxes(text: str) -> None:
    assert ralph_boxes(text) == github_boxes(text)


@pytest.mark.parametrize(
    "text",
    [
        "> - [ ] a quoted box\n",
        "- - [ ] a box behind a second marker\n",
        "- [ ] open, but the line mentions [x]\n",
        "- [ ]\n- [ ] \n",
        "-     [ ] indented code, not a box\n",
        "1) [x] ordered\n2) [ ] ordered\n",
        "\ufeff- [ ] on the first line of a BOM file\n- [ ] second\n",
        "- [x]\t# not a heading\n",
        "[x]: /a-link-definition\n2) [ ] text of its paragraph\n",
        "- a list\n<x-tag>\n- [ ] inside an HTML block\n",
        "| a | b |\n| - | - |\n<x-tag>\n- [ ] inside an HTML block\n",
        "10.  [ ] wide marker\n    ```\n    - [ ] lazy text, then a box\n",
    ],
)
def test_cmark_gfm_edge_cases(text: str) -> None:
    assert ralph_boxes(text) == github_boxes(text)


@pytest.mark.parametrize("levels", [12, 30, 49])
def test_deeply_nested_steps_are_github_boxes(levels: int) -> None:
    text = nested_task_plan(levels)

    assert ralph_boxes(text) == github_boxes(text)
    assert len(ralph_boxes(text)) == levels


def test_a_list_deep_in_quotes_matches_github() -> None:
    text = ">" * 97 + " - [ ] behind quotes, no box\n\n- [ ] after them\n"

    assert ralph_boxes(text) == github_boxes(text) == {(3, False)}
