"""ralph: carry long coding work through a markdown plan, one fresh context a step."""

__version__ = "0.1.0"
