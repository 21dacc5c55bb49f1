"""Hyperparameters declared once: a dataclass whose fields make the command-line options.

A hyperparameter class lists every field with its type, default and help text (field
metadata ``help``). :meth:`Hparams.add_args` turns the fields into ``argparse`` options with
those defaults, and :meth:`Hparams.from_args` builds the object back from the parsed
namespace, so a default lives in exactly one place (the open_lth pattern).

Examples:
    >>> import argparse, dataclasses
    >>> @dataclasses.dataclass
    ... class Toy(Hparams):
    ...     rate: float = dataclasses.field(default=0.5, metadata={"help": "a rate"})
    ...     on: bool = dataclasses.field(default=False, metadata={"help": "a flag"})
    >>> parser = argparse.ArgumentParser()
    >>> Toy.add_args(parser)
    >>> Toy.from_args(parser.parse_args(["--rate", "0.25", "--on"]))
    Toy(rate=0.25, on=True)
"""

import argparse
import dataclasses
from typing import Any, Dict, Optional


@dataclasses.dataclass
class Hparams:
    """Base of hyperparameter dataclasses whose fields are command-line options."""

    @classmethod
    def add_args(
        cls,
        parser: argparse.ArgumentParser,
        exclude: tuple = (),
        group: Optional[str] = None,
    ) -> None:
        """Add one ``--<field>`` option per field, with the field's default and help.

        Args:
            parser: The parser to extend.
            exclude: Fields not offered on the command line (they keep their default).
            group: Title of an argument group to put the options in.
        """
        target = parser.add_argument_group(group) if group else parser
        # ArgumentDefaultsHelpFormatter appends the defaults itself.
        shows_defaults = issubclass(
            parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter
        )
        for field in dataclasses.fields(cls):
            if field.name in exclude:
                continue
            help_text = field.metadata.get("help", "")
            choices = field.metadata.get("choices")
            default = field.default
            if field.type in (bool, "bool"):
                # A flag that defaults to on needs its --no- form to be turned off.
                target.add_argument(
                    f"--{field.name}",
                    action=(
                        argparse.BooleanOptionalAction if default else "store_true"
                    ),
                    default=default,
                    help=help_text,
                )
                continue
            kind = {"int": int, "float": float, "str": str}.get(field.type, field.type)
            target.add_argument(
                f"--{field.name}",
                type=kind,
                default=default,
                choices=choices,
                help=(
                    help_text if shows_defaults else f"{help_text} (default: {default})"
                ),
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace):
        """The hyperparameters of a parsed command line (missing fields: defaults)."""
        values: Dict[str, Any] = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(cls)
            if hasattr(args, f.name)
        }
        return cls(**values)
