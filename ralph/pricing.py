"""What an attempt cost, from the token counts and a price table per model.

The table ships in `ralph/data/prices.json` (USD per million tokens). Dated
model ids (`claude-sonnet-4-5-20250929`) are priced as their alias. A model
the table does not know costs 0, with one warning, so budgets in USD are
visibly blind for it rather than silently wrong.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ralph.engines import Usage

log = logging.getLogger("ralph")

MILLION = 1_000_000
DATE_SUFFIX = re.compile(r"-\d{8}$")

_warned: set[str] = set()


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_write: float
    cache_read: float


@cache
def load_prices() -> dict[str, Price]:
    text = resources.files("ralph").joinpath("data/prices.json").read_text("utf-8")
    table = json.loads(text)["models"]
    return {model: Price(**fields) for model, fields in table.items()}


def price_for(model: str) -> Price | None:
    prices = load_prices()
    return prices.get(model) or prices.get(DATE_SUFFIX.sub("", model))


def cost_usd(model: str, usage: Usage) -> float:
    """The price of `usage` on `model`, or 0 (and one warning) if it is unknown."""
    price = price_for(model)
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning(
                "no price known for model %s; its cost counts as $0, "
                "so budget_usd cannot limit it",
                model,
            )
        return 0.0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    )
    return total / MILLION
