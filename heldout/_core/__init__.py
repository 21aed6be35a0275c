"""Plumbing with no domain words: atomic files, npz reading and writing (O_DIRECT included),
bounded JSON parsing, locks, probes of the machine, rank statistics and row blocks.
Internal: not part of the public map (`heldout/__init__.py`); every other layer may import it.
"""
