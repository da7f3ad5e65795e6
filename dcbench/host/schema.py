"""Strict types for values a user hands in (spec keys, manifest fields): one rule per key.

TOML and JSON happily give a boolean where a number was meant, a string where a list was meant or
a list twice holding one value; Python then "works" with them (``range(True)``, iterating the
letters of ``"random"``). A :class:`Rule` accepts exactly one shape and says what it expected, so
every refusal is one line naming the key, the expected type and what was given::

    check_fields({"ipcs": [1, 1]}, {"ipcs": ListOf(Integer(minimum=1))}, "spec")
    # DcbenchError: spec ipcs lists 1 twice; list each value once
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dcbench.host.errors import DcbenchError


def describe(value: Any) -> str:
    """A value as the error message shows it, with its type where the repr hides it."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an empty list" if not value else f"the list {_short(value)}"
    kind = type(value).__name__
    return f"{_short(value)} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Rule:
    """Accepts one kind of value: ``check`` returns it (possibly normalised) or raises."""

    expected = "a value"

    def check(self, key: str, value: Any) -> Any:
        if not self.accepts(value):
            raise DcbenchError(f"{key} must be {self.expected}, got {describe(value)}")
        return value

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Rule):
    """An int, not a bool (``true`` is not 1) and not a float (``2.0`` is refused)."""

    minimum: int | None = None

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "an integer" + (f" >= {self.minimum}" if self.minimum is not None else "")

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool) and (self.minimum is None or value >= self.minimum)
        )


@dataclass(frozen=True)
class Number(Rule):
    """A finite int or float (not a bool)."""

    positive: bool = False

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "a positive finite number" if self.positive else "a finite number"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (not self.positive or value > 0)
        )


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty string."""

    expected = "a non-empty string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class Flag(Rule):
    expected = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class OneOf(Rule):
    choices: tuple[str, ...]

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"one of {', '.join(self.choices)}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices


@dataclass(frozen=True)
class ListOf(Rule):
    """A list of ``item``: never a bare value (``"random"`` is not ``["random"]``); by default
    non-empty and without repeats (a repeated IPC would run a cell twice)."""

    item: Rule
    distinct: bool = True
    non_empty: bool = True
    if_empty: str = "list at least one value"  # the fix an empty list's error suggests

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"a list, each item {self.item.expected}"

    def check(self, key: str, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            hint = f"; write {key.split()[-1]} = [{json.dumps(value)}]" if self._fits_item(value) else ""
            raise DcbenchError(f"{key} must be {self.expected}, got {describe(value)}{hint}")
        if self.non_empty and not value:
            raise DcbenchError(f"{key} is an empty list; {self.if_empty}")
        items = [self.item.check(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if self.distinct:  # by a canonical key in a set: linear, 100,000 seeds take milliseconds
            seen: set[str] = set()
            for v in items:
                canonical = json.dumps(v, sort_keys=True, default=repr)
                if canonical in seen:
                    raise DcbenchError(f"{key} lists {v!r} twice; list each value once")
                seen.add(canonical)
        return items

    def _fits_item(self, value: Any) -> bool:
        """Whether a bare value would be right as the list's single item (then suggest the list)."""
        try:
            self.item.check("", value)
            json.dumps(value)
        except (DcbenchError, TypeError):
            return False
        return True


@dataclass(frozen=True)
class Table(Rule):
    """A table (dict with string keys) whose values all follow ``values`` (when given)."""

    values: Rule | None = None

    expected = "a table"

    def check(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise DcbenchError(f"{key} must be a table, got {describe(value)}")
        return {k: self.values.check(f"{key}.{k}", v) if self.values else v for k, v in value.items()}


@dataclass(frozen=True)
class Record(Rule):
    """A table whose known keys follow their rules (other keys pass unchecked)."""

    fields: Mapping[str, Rule]

    expected = "a table"

    def check(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise DcbenchError(f"{key} must be a table, got {describe(value)}")
        return {**value, **check_fields(value, self.fields, key)}


@dataclass(frozen=True)
class Optional(Rule):
    """``rule`` or None (an unset key that means "the default")."""

    rule: Rule

    @property
    def expected(self) -> str:  # type: ignore[override]
        return self.rule.expected

    def check(self, key: str, value: Any) -> Any:
        return None if value is None else self.rule.check(key, value)


def check_fields(values: Mapping[str, Any], schema: Mapping[str, Rule], where: str) -> dict[str, Any]:
    """Check every key of ``values`` that ``schema`` knows; return the checked values."""
    return {
        key: rule.check(f"{where} {key}" if where else key, values[key])
        for key, rule in schema.items()
        if key in values
    }
