"""How fast ralph reads and edits a big plan, against markdown parsers alone.

Prints the median time and the peak memory of parse, tick and add_note on a
generated plan, and their ratio to the bare markdown-it parse of the same
text (the cost ralph cannot avoid) and to cmark-gfm's render (GitHub's C
parser), measured in the same run.

    python bench/bench_plan.py [STEPS]
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cmarkgfm
from markdown_it import MarkdownIt

from ralph.plan import add_note, parse_plan, tick

REPEATS = 5


def make_plan(steps: int) -> bytes:
    lines = ["---", "engine: shell", "---", "# A big plan", "", "Context.", ""]
    for number in range(steps):
        if number % 50 == 0:
            lines += [f"## Phase {number // 50}", ""]
        lines += [
            f"- [{'x' if number % 3 == 0 else ' '}] Step {number}: do a thing",
            "  Some details about the step, with `code` and *emphasis*.",
            f"  Verify: `pytest -q tests/test_{number}.py`",
        ]
        if number % 10 == 0:
            lines += ["  - [ ] A child step", "  - [ ] Another child step"]
    return ("\n".join(lines) + "\n").encode()


def measure(call: Callable[[], object]) -> tuple[float, float]:
    """Median seconds over REPEATS, and peak MiB of one call."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    data = make_plan(steps)
    text = data.decode()
    path = Path("plan.md")
    plan = parse_plan(data, path)
    middle = plan.steps[len(plan.steps) // 2]
    open_step = next(s for s in plan.steps[len(plan.steps) // 2 :] if not s.done)
    markdown = MarkdownIt("commonmark").enable("table")

    rows = [
        ("markdown-it parse (baseline)", lambda: markdown.parse(text)),
        ("cmark-gfm render", lambda: cmarkgfm.github_flavored_markdown_to_html(text)),
        ("ralph parse_plan", lambda: parse_plan(data, path)),
        ("ralph tick", lambda: tick(data, open_step)),
        ("ralph add_note", lambda: add_note(data, middle, "a note\nof two lines")),
    ]
    print(f"plan: {len(data) / 1024:.0f} KiB, {len(plan.steps)} steps")
    baseline = None
    for name, call in rows:
        seconds, mib = measure(call)
        baseline = baseline or seconds
        print(
            f"{name:30} {seconds * 1000:9.2f} ms {mib:8.2f} MiB peak "
            f"{seconds / baseline:6.2f}x baseline"
        )


if __name__ == "__main__":
    main()
