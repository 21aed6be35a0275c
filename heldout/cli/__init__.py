"""The command line `heldout <command>`: thin absl-flag wrappers over the library.

`main` dispatches to one module per command (`tools/*.py` and `demo.py` are shims over
it); `flags` defines every shared flag once, `options` reads them, and `app` gives every
command the same `--help`, one-line errors and exit statuses.
"""
