"""Options declared once.

Each option of a build is a field of an options dataclass whose metadata (:func:`option`) holds the rest of its
declaration: the constraint its value must meet, its help text, its command-line flag and an example. The field
gives the name, the type and the default. From that one declaration come:

- the validation (:func:`validate`) and its error messages, generated from the constraint in the spirit of
  scikit-learn's ``utils/_param_validation.py`` (``Interval``, ``StrOptions``): they name the flag (or, for the
  Python API, the parameter), what it must be, what was given and an example of a good value;
- the ``daedalus build`` flags (``interfaces/flags.py``);
- the estimators' parameters (``interfaces/estimators.py``: their defaults are read from the dataclass, and a
  test compares their signature with the declaration).

Only this module knows how a constraint is described; nothing else restates an option's default.
"""

from __future__ import annotations

import math
import numbers
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from daedalus.errors import ConfigError

Style = Literal["cli", "python"]  # how a message names an option: its flag, or its Python parameter
T = TypeVar("T")


# -- constraints ------------------------------------------------------------------------------------------------
class Constraint(ABC):
    """What a value must be. ``accepts`` says whether it is; ``describe`` says what it must be, for the message
    (``--time must be <describe>, got ...``); ``reader`` reads the flag's text (argparse's ``type``, whose name
    argparse shows when it fails: "invalid int value: 'x'")."""

    @abstractmethod
    def accepts(self, value: Any) -> bool: ...

    @abstractmethod
    def describe(self) -> str: ...

    def reader(self) -> Callable[[str], Any]:
        return str


@dataclass(frozen=True)
class Interval(Constraint):
    """A number (``kind`` float) or an integer (``kind`` int) between ``low`` and ``high`` (None: no bound);
    ``closed`` says which bounds are allowed values. Booleans are not numbers here; NaN is in no interval."""

    kind: type[int] | type[float]
    low: float | None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    unit: str = ""  # shown after the bounds: "a number >= 400 MB"

    def accepts(self, value: Any) -> bool:
        wanted = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            return False
        x: float = int(value) if isinstance(value, numbers.Integral) else float(value)  # big ints stay exact
        low_ok = self.low is None or (x >= self.low if self.closed in ("both", "left") else x > self.low)
        high_ok = self.high is None or (x <= self.high if self.closed in ("both", "right") else x < self.high)
        return bool(low_ok and high_ok)  # NaN fails both comparisons

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        kind = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None and self.closed == "both":
            return f"{kind} from {_number(self.low)} to {_number(self.high)}{unit}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {_number(self.low)}{unit}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {_number(self.high)}{unit}")
        return f"{kind} {' and '.join(parts)}".strip()

    def reader(self) -> Callable[[str], Any]:
        return self.kind


@dataclass(frozen=True)
class StrOptions(Constraint):
    """One of a few strings. ``options`` may be a function returning them, for a list kept by a module too heavy
    to import while the command line is read (the designers)."""

    options: tuple[str, ...] | Callable[[], Sequence[str]]

    def choices(self) -> tuple[str, ...]:
        return tuple(self.options() if callable(self.options) else self.options)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices()

    def describe(self) -> str:
        return f"one of {_alternatives(self.choices())}"


@dataclass(frozen=True)
class ListOptions(Constraint):
    """One of a few sets of names, written comma-separated on the command line ("metric,fairness"); their order
    does not matter ("fairness,metric" is the same choice)."""

    options: tuple[tuple[str, ...], ...]

    def accepts(self, value: Any) -> bool:
        return _is_names(value) and any(set(value) == set(o) for o in self.options)

    def describe(self) -> str:
        return f"one of {_alternatives([','.join(o) for o in self.options])}"

    def reader(self) -> Callable[[str], Any]:
        return comma_list


def _is_names(value: Any) -> bool:
    """A list or tuple of strings: what the list options hold."""
    return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class Names(Constraint):
    """A list of names (columns, model families), comma-separated on the command line."""

    what: str = "names"

    def accepts(self, value: Any) -> bool:
        return _is_names(value)

    def describe(self) -> str:
        return f"a list of {self.what}"

    def reader(self) -> Callable[[str], Any]:
        return comma_list


@dataclass(frozen=True)
class Text(Constraint):
    """Any string; what it names (a metric, a file, a URL) is checked where it is used."""

    what: str = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class Parsed(Text):
    """A string with a grammar of its own: ``parser`` reads it and raises a ConfigError that names the problem
    and the fix in that grammar's terms (an image shape, a fairness constraint)."""

    parser: Callable[[str], object] | None = None

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if self.parser is not None:
            self.parser(value)
        return True


@dataclass(frozen=True)
class Boolean(Constraint):
    """True or False. On the command line a switch: ``--flag`` for an option off by default, ``--no-flag`` for
    one on by default, both for one whose default (None) is decided from the data."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "True or False"


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ("a", "b", "c"): how the command line writes a list."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _number(x: float) -> str:
    """60.0 -> "60", 4294967295 -> "4294967295", 0.003 -> "0.003" (never "4.29497e+09")."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _alternatives(values: Sequence[str]) -> str:
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# -- the declaration --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What the dataclass field does not say about an option."""

    constraint: Constraint
    help: str
    flag: str | None = None  # e.g. "--time"; None: not on the command line
    metavar: str | None = None
    example: Any = None  # a good value, for messages; None: the default
    hint: str = ""  # appended to a refusal: why the bound is where it is, or another way out
    group: str = ""  # the --help section ("oversight", "image data")
    python: bool = False  # a parameter of the estimators (AutoClassifier, AutoRegressor)


def option(default: T, constraint: Constraint, help: str, **spec: Any) -> T:
    """A dataclass field declaring an option: ``time_budget: float | None = option(60.0, Interval(...), ...)``.
    Typed as its default, so that the dataclass annotation is checked against it."""
    return field(default=default, metadata={"spec": Spec(constraint, help, **spec)})  # type: ignore[no-any-return]


def required(constraint: Constraint, help: str, **spec: Any) -> Any:
    """A dataclass field declaring an option with no default (the build's target)."""
    return field(metadata={"spec": Spec(constraint, help, **spec)})


@dataclass(frozen=True)
class Declared:
    """One option as declared: its field's name, type and default with its :class:`Spec`."""

    name: str
    type: str
    default: Any  # MISSING for a required option
    spec: Spec

    @property
    def optional(self) -> bool:
        """None is allowed (it means "decided later": from the data, the machine or the other options)."""
        return self.default is None or "None" in self.type

    def shown(self, style: Style) -> str:
        return self.spec.flag if style == "cli" and self.spec.flag else self.name

    def example(self, style: Style) -> str:
        value = self.spec.example if self.spec.example is not None else self.default
        if style == "python" or not self.spec.flag:
            return f"{self.name}={value!r}"
        return f"{self.spec.flag} {shlex.quote(cli_text(value))}"

    def message(self, value: Any, style: Style) -> str:
        """The refusal of ``value``, generated from the constraint: names the option, what it must be, what was
        given and a good value."""
        must = self.spec.constraint.describe()
        if self.optional and style == "python":  # (on the command line, None is a flag left out)
            must += " or None"
        given = cli_text(value) if style == "cli" and not isinstance(value, str) else repr(value)
        hint = f" ({self.spec.hint})" if self.spec.hint else ""
        return f"{self.shown(style)} must be {must}, got {given}; e.g. {self.example(style)}{hint}"


def cli_text(value: Any) -> str:
    """A value as the command line writes it."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, float) and math.isfinite(value):
        return _number(value)
    return str(value)


def declarations(cls: type) -> tuple[Declared, ...]:
    """The options a dataclass declares, in field order."""
    out = []
    for f in fields(cls):
        spec = f.metadata.get("spec")
        if spec is not None:
            out.append(Declared(f.name, str(f.type), f.default, spec))  # MISSING: no default
    return tuple(out)


def declared(cls: type, name: str) -> Declared:
    for d in declarations(cls):
        if d.name == name:
            return d
    raise KeyError(name)


def check_value(d: Declared, value: Any, style: Style = "cli") -> None:
    """Refuse ``value`` for the option ``d`` unless it meets the option's constraint (or is None where allowed)."""
    if value is None and d.optional:
        return
    if not d.spec.constraint.accepts(value):
        raise ConfigError(d.message(value, style))


def validate(obj: Any, style: Style = "cli") -> None:
    """Every declared option of the dataclass instance ``obj`` meets its constraint; the first that does not is a
    ConfigError naming it (by flag for the command line, by parameter for the Python API)."""
    for d in declarations(type(obj)):
        check_value(d, getattr(obj, d.name), style)
