"""The build flags of the ``daedalus`` command, derived from the options' declarations (``orchestration/options``):
flag, type, metavar, help text and default all come from there. A flag shared by table and image builds
(``--time``, ``--trials``, ``--seed``, ``--threads``, ``--target``) is added once; its help names each kind's
default where they differ.

A flag left out is absent from the parsed arguments (``argparse.SUPPRESS``), so that the dataclass's own default
applies: no default is restated here.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import MISSING
from typing import Any

from daedalus.orchestration.option_spec import (
    Boolean,
    Declared,
    StrOptions,
    check_value,
    cli_text,
    declarations,
    declared,
)
from daedalus.orchestration.options import BuildOptions, ImageBuildOptions

# The kinds of build, in the order their flags are listed, and how --help names the second kind's defaults.
KINDS: tuple[tuple[type, str], ...] = ((BuildOptions, ""), (ImageBuildOptions, "with --image-shape"))


def dest(d: Declared) -> str:
    """The attribute of the parsed arguments that holds the flag's value (``--no-explain`` -> ``explain``)."""
    flag = d.spec.flag or ""
    name = flag[2:]
    if isinstance(d.spec.constraint, Boolean) and d.default is True:
        name = name.removeprefix("no-")
    return name.replace("-", "_")


def _defaults_text(decls: list[tuple[Declared, str]]) -> str:
    """" (default 60; 600 with --image-shape)": each kind's default, where the help text does not explain it."""
    shown: list[tuple[Any, str]] = []
    for d, label in decls:
        if d.default in (None, MISSING, ()) or isinstance(d.default, bool) or "default" in d.spec.help:
            continue
        if all(d.default != value for value, _ in shown):
            shown.append((d.default, cli_text(d.default) + (f" {label}" if label and shown else "")))
    return f" (default {'; '.join(text for _, text in shown)})" if shown else ""


def _flag_kwargs(d: Declared, help_text: str, required: bool = False) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": dest(d), "default": argparse.SUPPRESS,
                              "help": help_text.replace("%", "%%")}  # argparse formats help with %
    if isinstance(d.spec.constraint, Boolean):
        kwargs["action"] = {False: "store_true", True: "store_false"}.get(d.default,
                                                                         argparse.BooleanOptionalAction)
        return kwargs
    kwargs["type"] = d.spec.constraint.reader()
    if d.spec.metavar:
        kwargs["metavar"] = d.spec.metavar
    elif isinstance(d.spec.constraint, StrOptions) and not callable(d.spec.constraint.options):
        kwargs["metavar"] = "{" + ",".join(d.spec.constraint.choices()) + "}"  # as argparse shows choices
    if required:
        kwargs["required"] = True
    return kwargs


def add_build_flags(parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> None:
    """Every option of a table or an image build as a flag of ``parser``, in declaration order, grouped as
    declared; options named in ``skip`` (a field name) are left out (``demo`` has its own target)."""
    by_flag: dict[str, list[tuple[Declared, str]]] = {}
    for cls, label in KINDS:
        for d in declarations(cls):
            if d.spec.flag and d.name not in skip:
                by_flag.setdefault(d.spec.flag, []).append((d, label))
    groups: dict[str, Any] = {"": parser}
    for flag, decls in by_flag.items():
        first = decls[0][0]
        group = groups.get(first.spec.group)
        if group is None:
            group = groups[first.spec.group] = parser.add_argument_group(first.spec.group)
        required = len(decls) == len(KINDS) and all(d.default is MISSING for d, _ in decls)  # --target
        group.add_argument(flag, **_flag_kwargs(first, first.spec.help + _defaults_text(decls), required))


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """``--time`` and ``--trials`` of ``resume``: left out (None), the run keeps its own budget."""
    for name in ("time_budget", "n_trials"):
        d = declared(BuildOptions, name)
        kwargs = _flag_kwargs(d, f"{d.spec.help} (default: the run's own budget)")
        assert d.spec.flag is not None  # both are declared with their flags
        parser.add_argument(d.spec.flag, **{**kwargs, "default": None})


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``cls`` given on the command line, by field name (a flag left out is not there)."""
    return {d.name: getattr(args, dest(d)) for d in declarations(cls) if d.spec.flag and hasattr(args, dest(d))}


def build_options(args: argparse.Namespace, target: str) -> BuildOptions:
    """The table build's options from the command line, checked."""
    values = {**given(BuildOptions, args), "target": target}
    if "n_trials" in values and "time_budget" not in values:
        values["time_budget"] = None  # --trials alone: the build is bounded by its trials only (see --time)
    return BuildOptions(**values).checked()


def image_build_options(args: argparse.Namespace) -> ImageBuildOptions:
    """The image build's options from the command line, checked."""
    return ImageBuildOptions(**given(ImageBuildOptions, args)).checked()


def check_budget(args: argparse.Namespace) -> None:
    """``resume``'s ``--time`` and ``--trials``, checked against their declarations before the run is opened."""
    for name in ("time_budget", "n_trials"):
        d = declared(BuildOptions, name)
        check_value(d, getattr(args, dest(d)))
