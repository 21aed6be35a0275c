"""The command lines: thin absl-flag wrappers over the library, one module per command.

`tools/*.py` and `demo.py` are the documented commands; they call `run()` of the module
here, which is also what the console entry points in `pyproject.toml` (`heldout-train`,
`heldout-scores`, ...) call. Flags shared by several commands are defined once, in the
flag-group modules (`flag_groups`), and every command reports errors through
`app.guarded`: a `HeldoutError` or `OSError` is one line naming the file and the problem;
anything else is a bug and keeps its traceback.
"""
