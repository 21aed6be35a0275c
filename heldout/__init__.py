"""heldout: tools for the heldout-training releases (memorization, influence, C-scores)."""

__version__ = "0.1.0"
