"""The flag machinery of the commands: path, choice-list and finite-number types, and
defining once.

`define` makes a flag a key flag of the command that uses it (its `--help` lists it) and
lets two commands in one process share a definition; `renamed` keeps an old flag name
working with a warning; `finish_parsing` applies both after absl has parsed.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence

from absl import flags

FLAGS = flags.FLAGS
# ------------------------------------------------------------------------------ types


class PathParser(flags.ArgumentParser):
    """A path: `~` and `~user` expanded, as a shell would have."""

    def parse(self, argument):
        return None if argument is None else os.path.expanduser(str(argument))

    def flag_type(self) -> str:
        return "path"


class PathListParser(flags.ListParser):
    """Comma-separated paths, each with `~` expanded (`a+b` joins parts: each expanded)."""

    def parse(self, argument):
        paths = super().parse(argument)
        return ["+".join(os.path.expanduser(p) for p in path.split("+")) for path in paths]

    def flag_type(self) -> str:
        return "comma separated list of paths"


class ChoiceListParser(flags.ListParser):
    """Comma-separated names out of `choices`; an unknown one is a flag error (exit 2)."""

    def __init__(self, choices: Sequence[str]):
        super().__init__()
        self.choices = tuple(choices)

    def parse(self, argument):
        names = super().parse(argument)
        unknown = [name for name in names if name not in self.choices]
        if unknown or not names:
            raise ValueError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from "
                f"{', '.join(self.choices)}"
            )
        return names

    def flag_type(self) -> str:
        return f"comma separated list of {', '.join(self.choices)}"


class FiniteFloatParser(flags.FloatParser):
    """A finite number (never NaN or infinity), positive or within bounds as asked.

    absl's own bounds let NaN through (every comparison with NaN is false): a NaN or
    infinite learning rate trains a model of NaNs without a word, and a NaN threshold
    selects nothing and reports it as a result. Refused while parsing, before any work.

    Args:
      lower_bound, upper_bound: the closed bounds (None: unbounded on that side).
      positive: refuse 0 and below.
    """

    def __init__(
        self,
        lower_bound: float | None = None,
        positive: bool = False,
        upper_bound: float | None = None,
    ):
        super().__init__()
        self.lower, self.positive, self.upper = lower_bound, positive, upper_bound
        self.syntactic_help = "a finite number" + self._range()

    def _range(self) -> str:
        if self.lower is not None and self.upper is not None:
            return f" in [{self.lower:g}, {self.upper:g}]"
        return ""

    def parse(self, argument):
        value = super().parse(argument)
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number{self._range()}, got {argument!r}")
        if self.positive and not value > 0:
            raise ValueError(f"must be positive, got {argument!r}")
        if self._range() and not self.lower <= value <= self.upper:
            raise ValueError(f"must be a finite number{self._range()}, got {argument!r}")
        if self.lower is not None and value < self.lower:
            raise ValueError(f"must be at least {self.lower:g}, got {argument!r}")
        if self.upper is not None and value > self.upper:
            raise ValueError(f"must be at most {self.upper:g}, got {argument!r}")
        return value

    def flag_type(self) -> str:
        return "float"


def DEFINE_finite_float(  # noqa: N802 - absl's style
    name,
    default,
    help,
    flag_values=FLAGS,
    lower_bound=None,
    positive=False,
    upper_bound=None,
    **args,
):
    """A float flag that refuses NaN, infinities and (as asked) values outside its bounds
    (exit status 2, one line naming the flag); a None default stays None."""
    parser = FiniteFloatParser(lower_bound, positive, upper_bound)
    return flags.DEFINE(
        parser, name, default, help, flag_values, flags.ArgumentSerializer(), **args
    )


def DEFINE_path(name, default, help, flag_values=FLAGS, **args):  # noqa: N802 - absl's style
    """A string flag whose value has `~` expanded."""
    return flags.DEFINE(
        PathParser(), name, default, help, flag_values, flags.ArgumentSerializer(), **args
    )


def DEFINE_path_list(name, default, help, flag_values=FLAGS, **args):  # noqa: N802
    """A comma-separated list flag of paths, each with `~` expanded."""
    serializer = flags.CsvListSerializer(",")
    return flags.DEFINE(PathListParser(), name, default, help, flag_values, serializer, **args)


def DEFINE_choice_list(name, default, help, flag_values=FLAGS, choices=(), **args):  # noqa: N802
    """A comma-separated list flag of names out of `choices` (listed in the help)."""
    serializer = flags.CsvListSerializer(",")
    help = f"{help} Choices: {', '.join(choices)}."
    return flags.DEFINE(
        ChoiceListParser(choices), name, default, help, flag_values, serializer, **args
    )


def DEFINE_choice(name, default, help, flag_values=FLAGS, choices=(), **args):  # noqa: N802
    """An enum flag with the argument order of the others (`define` passes help third)."""
    return flags.DEFINE_enum(name, default, list(choices), help, flag_values, **args)


# ------------------------------------------------------------------- defining once

_REQUIRED: dict[int, set[str]] = {}  # id(FlagValues) -> flags a command requires
MEANINGS: dict[str, str] = {}  # flag name -> its help without a command's note (docs/cli.md)
RENAMED_TO: dict[str, str] = {}  # old flag name -> what its warning says to use
_RENAMED: dict[int, dict[str, Callable[[flags.FlagValues], tuple[str, str]]]] = {}


def define(
    module: str,
    kind: Callable,
    name: str,
    default,
    help: str,
    flag_values: flags.FlagValues = FLAGS,
    required: bool = False,
    note: str = "",
    **args,
) -> None:
    """Defines one flag (once per FlagValues) as a key flag of `module`.

    A second definition with the same default and help (two commands in one process)
    reuses the first; another one raises absl's DuplicateFlagError.

    Args:
      module: the command module's `__name__`: its `--help` lists the flag.
      kind: an absl definer (`flags.DEFINE_string`, `DEFINE_path`, ...).
      name, default, help: as for absl; `help` is the flag's one meaning.
      flag_values: where to define it.
      required: the command needs it; checked after the renamed flags are applied
        (`finish_parsing`), so that an old name counts.
      note: what the flag does in this command (a default, a format), after `help`.
      args: more keywords of `kind` (`lower_bound`, `choices`).
    """
    MEANINGS[name] = help
    help = f"{help} {note}".strip()
    if name in flag_values:
        existing = flag_values[name]
        scratch = flags.FlagValues()
        kind(name, default, help, flag_values=scratch, **args)
        if (existing.default, existing.help) != (scratch[name].default, scratch[name].help):
            raise flags.DuplicateFlagError.from_flag(name, flag_values)
    else:
        kind(name, default, help, flag_values=flag_values, **args)
    flag_values.register_key_flag_for_module(module, flag_values[name])
    if required:
        _REQUIRED.setdefault(id(flag_values), set()).add(name)


def renamed(
    module: str,
    old: str,
    new: str | Callable[[flags.FlagValues], str],
    flag_values: flags.FlagValues = FLAGS,
    advice: str | None = None,
) -> None:
    """Keeps `--old` working for now: it warns on stderr and sets the new flag.

    Args:
      module: the command module's `__name__`.
      old: the old name; defined with the parser of the new flag (defined first).
      new: the new name, or a function of the parsed flags that chooses it (`--workers`
        became `--dask_workers` or `--reader_threads`).
      flag_values: where both are defined.
      advice: what the warning says after "use" (default `--new`).
    """
    target = new if isinstance(new, str) else None
    parser = flag_values[target].parser if target else flags.IntegerParser(lower_bound=1)
    serializer = flag_values[target].serializer if target else flags.ArgumentSerializer()
    use = advice or f"--{target}"
    define(
        module,
        lambda name, default, help, flag_values, **_: flags.DEFINE(
            parser, name, default, help, flag_values, serializer
        ),
        old,
        None,
        f"Deprecated: use {use}.",
        flag_values,
    )
    RENAMED_TO[old] = use
    choose = (lambda fv: target) if target else new
    _RENAMED.setdefault(id(flag_values), {})[old] = lambda fv: (choose(fv), use)


def finish_parsing(flag_values: flags.FlagValues = FLAGS) -> None:
    """After absl parsed: old names warn and set the new flags; required flags checked.

    Raises:
      flags.IllegalFlagValueError: a required flag without a value (exit status 2).
    """
    for old, choose in _RENAMED.get(id(flag_values), {}).items():
        if old not in flag_values or not flag_values[old].present:
            continue
        new, use = choose(flag_values)
        print(f"warning: --{old} is deprecated; use {use}", file=sys.stderr)
        if not flag_values[new].present:
            flag_values[new].value = flag_values[old].value
            flag_values[new].present = flag_values[old].present
    for name in sorted(_REQUIRED.get(id(flag_values), ())):
        if name in flag_values and flag_values[name].value is None:
            raise flags.IllegalFlagValueError(f"flag --{name} is required")
