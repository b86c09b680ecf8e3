"""Typed recipes: YAML files mapped onto dataclasses, one per component.

A recipe is read with `yaml.safe_load`, overridden with `--set a.b=value` pairs, then checked
against the dataclasses: unknown keys get a "did you mean" hint and wrong types name the key.
A recipe may carry an `expand:` block (lists of values per key) that turns it into several runs
for batch evaluation.

A config field is declared once, with its default and a one-line comment: `internal` marks the
fields code fills in (never recipe keys), `with_settings_of` lends one config's settings to
another (Kim's model shape to the recipe's model section), and `field_comments` reads the
comments back (for generated parameter docs).
"""

from __future__ import annotations

import ast
import codecs
import copy
import dataclasses
import functools
import inspect
import io
import itertools
import math
import numbers
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.rundir import check_run_name

T = TypeVar("T")
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with `safe_load`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise TextCNNError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TextCNNError(f"{path}{where}: expected valid YAML, got a syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TextCNNError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_recipe_dict(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a recipe file and apply `--set` overrides; the result is still plain data."""
    return apply_overrides(read_yaml(path), overrides)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split `model.dropout=0.3` into (['model', 'dropout'], 0.3); the value is read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise TextCNNError(f"--set: expected KEY=VALUE such as model.dropout=0.3, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value == "" and raw.strip() not in ("", "''", '""'):  # '|' or '>' alone: a YAML block scalar
        value = raw.strip()
    return key.strip().split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` override set (sections are created)."""
    out = copy.deepcopy(dict(data))
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise TextCNNError(f"--set {item}: '{where}' is a value, not a section")
            node = child
        node[keys[-1]] = value
    return out


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting where YAML is looser (int -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        hint = did_you_mean(str(value), [str(a) for a in get_args(tp)])
        raise TextCNNError(f"{key}: expected one of {_type_name(tp)}, got {value!r}{hint}")
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _convert(value, option, key)
            except TextCNNError as exc:
                errors.append(exc)
        raise TextCNNError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return from_dict(tp, value, prefix=key)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            (item_tp, *_) = get_args(tp) or (Any,)
            items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
            return items if origin is list else tuple(items)
    elif origin is dict:
        if isinstance(value, Mapping):
            key_tp, val_tp = get_args(tp) or (Any, Any)
            return {_convert(k, key_tp, key): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TextCNNError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def shown(value: Any) -> str:
    """`value` as an error message quotes it (a NumPy scalar as the Python value it holds)."""
    item = getattr(value, "item", None)
    if not isinstance(value, (str, bytes, list, tuple, dict)) and callable(item):
        try:
            value = item()
        except (TypeError, ValueError):
            pass
    return repr(value)


def is_integer(value: Any) -> bool:
    """An integer (NumPy's included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (an integer included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 optional: bool = False) -> None:
    """Raise a one-line `TextCNNError` naming `key` unless `value` is a finite number (an integer
    with `integer`) within the bounds given (open bounds with `low_open`/`high_open`), or None
    with `optional`. Config dataclasses call it from `__post_init__`."""
    if optional and value is None:
        return
    ok = is_integer(value) if integer else is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        expected = f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        expected = f"{kind} {'>' if low_open else '>='} {low}"
    elif high is not None:
        expected = f"{kind} {'<' if high_open else '<='} {high}"
    else:
        expected = kind if integer else "a finite number"
    raise TextCNNError(f"{key}: expected {expected}{' or null' if optional else ''}, got {shown(value)}")


def check_encoding(key: str, value: Any) -> str:
    """`value` if Python knows it as a text encoding, else a one-line `TextCNNError` naming `key`."""
    try:
        codecs.lookup(value)
    except (LookupError, TypeError):
        raise TextCNNError(f"{key}: expected a text encoding such as utf-8, latin-1 or cp1252, "
                           f"got {value!r}") from None
    return value


def check_literals(obj: Any, section: str) -> None:
    """Check every `Literal` field of dataclass `obj` (the recipe checks them on reading; this
    also covers objects built in Python, e.g. from estimator parameters)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if get_origin(hints[f.name]) is Literal:
            _convert(getattr(obj, f.name), hints[f.name], f"{section}.{f.name}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping; reject unknown keys (with a hint) and wrong types."""
    data = {} if data is None else data
    where = prefix or cls.__name__
    if not isinstance(data, Mapping):
        raise TextCNNError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise TextCNNError(f"unknown key '{full}'{did_you_mean(str(key), fields)}; "
                               f"expected one of: {', '.join(fields)}")
        kwargs[key] = _convert(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TextCNNError:
        raise
    except (TypeError, ValueError) as exc:
        raise TextCNNError(f"{where}: {exc}") from None


def typed_recipe(cls: type[T], data: Mapping[str, Any], *, source: str | Path = "recipe") -> T:
    """`from_dict` for a whole recipe: errors start with `source`; a missing `name` is its stem."""
    try:
        recipe = from_dict(cls, data)
    except TextCNNError as exc:
        raise TextCNNError(f"{source}: {exc}") from None
    if getattr(recipe, "name", "") is None:
        recipe.name = Path(str(source)).stem
    return recipe


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data (tuples become lists), ready for YAML or JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(obj)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Plain data as YAML, keys in their given order."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


def expand_runs(recipe: Mapping[str, Any], *, name: str = "run") -> list[tuple[str, dict[str, Any]]]:
    """Expand a recipe's `expand:` block into (run name, recipe) pairs: the product of its lists.

    `expand: {data.dataset: [mr, subj], train.seed: [1, 2]}` gives four runs named like
    `run/mr/seed=1`. A key may also map to a mapping `{label: {key: value, ...}}` to change several
    keys together (e.g. a variant with its embeddings). A label names a folder of the run's
    output, so it may not hold '/', '\\' or '..' (`textcnn.core.rundir.check_run_name`).
    """
    recipe = dict(recipe)
    block = recipe.pop("expand", None) or {}
    if not isinstance(block, Mapping):
        raise TextCNNError(f"expand: expected a mapping of key -> list of values, got {block!r}")
    axes: list[list[tuple[str, list[str]]]] = []
    for key, values in block.items():
        if isinstance(values, Mapping):
            axes.append([(str(label), [f"{k}={_yaml_value(v)}" for k, v in (sets or {}).items()])
                         for label, sets in values.items()])
        elif isinstance(values, list) and values:
            short = key.rsplit(".", 1)[-1]
            axes.append([(f"{short}={v}" if not isinstance(v, str) else v, [f"{key}={_yaml_value(v)}"])
                         for v in values])
        else:
            raise TextCNNError(f"expand.{key}: expected a non-empty list or a mapping of labels, got {values!r}")
    for (key, values), choices in zip(block.items(), axes):
        for label, _ in choices:
            try:
                check_run_name(label, f"expand.{key}")
            except TextCNNError as exc:
                hint = "" if isinstance(values, Mapping) else f"; label the values: {{label: {{{key}: value}}}}"
                raise TextCNNError(f"{exc}{hint}") from None
    runs = []
    for combo in itertools.product(*axes) if axes else [()]:
        labels = [label for label, _ in combo]
        sets = [s for _, group in combo for s in group]
        runs.append(("/".join([name, *labels]), apply_overrides(recipe, sets)))
    return runs


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# -- one declaration per setting ------------------------------------------------------------------


def internal(default: Any = dataclasses.MISSING) -> Any:
    """A config field that code fills in (from the data, from other settings, or kept at its
    default), never a recipe key: `settings_of` leaves it out."""
    return dataclasses.field(default=default, metadata={"internal": True})


def settings_of(cls: type) -> list[dataclasses.Field]:
    """The fields of config dataclass `cls` that a user sets: all but the `internal` ones."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def with_settings_of(source: type, *, after: str | None = None) -> Callable[[type], type]:
    """Class decorator, placed under `@dataclass`: the class gets the settings of config
    dataclass `source` as its own fields (type, default and comment as `source` declares them),
    after its field `after` (else first), so that a setting added to `source` is one at once."""
    def lend(cls: type) -> type:
        own = dict(cls.__dict__.get("__annotations__", {}))
        hints = typing.get_type_hints(source)
        lent = settings_of(source)
        clash = sorted(set(own) & {f.name for f in lent})
        if clash:
            raise TypeError(f"{cls.__name__}: {', '.join(clash)} already declared by {source.__name__}")
        names = list(own)
        at = names.index(after) + 1 if after is not None else 0
        annotations = {name: own[name] for name in names[:at]}
        for f in lent:
            annotations[f.name] = hints[f.name]  # resolved: the names it uses live in `source`'s module
            setattr(cls, f.name, dataclasses.field(
                default=f.default, default_factory=f.default_factory,
                metadata={**f.metadata, "declared_in": source}))
        annotations.update({name: own[name] for name in names[at:]})
        cls.__annotations__ = annotations
        return cls
    return lend


def field_comments(cls: type) -> dict[str, str]:
    """Each field of dataclass `cls` and the one-line comment of its declaration (read from the
    source of the class that declares it; empty where the source or the comment is missing)."""
    found = {}
    for f in dataclasses.fields(cls):
        owner = f.metadata.get("declared_in") or next(
            (c for c in cls.__mro__ if f.name in c.__dict__.get("__annotations__", {})), cls)
        found[f.name] = _declared_comments(owner).get(f.name, "")
    return found


@functools.cache
def _declared_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen or -OO install): no comments
        return {}
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    (node,) = ast.parse(source).body
    return {stmt.target.id: comments[stmt.end_lineno] for stmt in node.body
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            and stmt.end_lineno in comments}
