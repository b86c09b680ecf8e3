"""Recipes: typed sections, unknown keys with hints, wrong types naming the key, overrides, expansion."""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest

from textcnn.core.config import (
    apply_overrides,
    expand_runs,
    field_comments,
    from_dict,
    internal,
    read_yaml,
    settings_of,
    to_dict,
    with_settings_of,
)
from textcnn.core.errors import TextCNNError


@dataclass
class Inner:
    dropout: float = 0.5
    widths: list[int] = field(default_factory=lambda: [3, 4, 5])
    variant: Literal["rand", "static"] = "rand"
    max_norm: float | None = 3.0


@dataclass
class Outer:
    name: str = "x"
    model: Inner = field(default_factory=Inner)


def test_from_dict_builds_nested_dataclasses_and_converts_int_to_float():
    got = from_dict(Outer, {"name": "a", "model": {"dropout": 1, "widths": [2], "max_norm": None}})
    assert got == Outer(name="a", model=Inner(dropout=1.0, widths=[2], max_norm=None))
    assert isinstance(got.model.dropout, float)
    assert to_dict(got) == {"name": "a", "model": {"dropout": 1.0, "widths": [2],
                                                   "variant": "rand", "max_norm": None}}


def test_unknown_key_names_the_full_key_and_suggests():
    with pytest.raises(TextCNNError, match=r"unknown key 'model\.dropot'.*did you mean 'dropout'"):
        from_dict(Outer, {"model": {"dropot": 0.3}})


@pytest.mark.parametrize("data, message", [
    ({"model": {"dropout": "high"}}, r"model\.dropout: expected float, got 'high'"),
    ({"model": {"widths": [3, "four"]}}, r"model\.widths\[1\]: expected int"),
    ({"model": {"variant": "statik"}}, r"model\.variant: expected one of .*did you mean 'static'"),
    ({"model": {"dropout": True}}, r"model\.dropout: expected float, got True"),
    ({"model": 3}, r"model: expected Inner"),
])
def test_wrong_types_name_the_key(data, message):
    with pytest.raises(TextCNNError, match=message):
        from_dict(Outer, data)


def test_overrides_parse_yaml_values_and_create_sections():
    got = apply_overrides({"model": {"dropout": 0.5}},
                          ["model.dropout=0.3", "train.epochs=5", "model.widths=[2, 3]", "name=abc"])
    assert got == {"model": {"dropout": 0.3, "widths": [2, 3]}, "train": {"epochs": 5}, "name": "abc"}


def test_an_override_that_yaml_reads_as_empty_keeps_its_text():
    # '|' and '>' alone start a YAML block scalar ('' when parsed); a label separator may be '|'
    got = apply_overrides({}, ["data.label_separator=|", "a=>", "b=''", "c="])
    assert got == {"data": {"label_separator": "|"}, "a": ">", "b": "", "c": ""}


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_bad_override_is_a_clear_error(item):
    with pytest.raises(TextCNNError, match="expected KEY=VALUE"):
        apply_overrides({}, [item])


def test_override_into_a_value_is_an_error():
    with pytest.raises(TextCNNError, match="'model' is a value, not a section"):
        apply_overrides({"model": 3}, ["model.dropout=0.1"])


def test_read_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dropout: [0.1\n")
    with pytest.raises(TextCNNError, match=r"bad\.yaml:\d+: expected valid YAML"):
        read_yaml(bad)
    with pytest.raises(TextCNNError, match="recipe file not found"):
        read_yaml(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(TextCNNError, match="expected a mapping"):
        read_yaml(listy)


def test_yaml_is_read_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(TextCNNError):
        read_yaml(evil)


def test_expand_runs_is_the_product_of_the_lists():
    recipe = {"train": {"epochs": 3}, "expand": {
        "data.dataset": ["mr", "subj"], "train.seed": [1, 2],
        "variant": {"rand": {"model.variant": "rand"},
                    "static-w2v": {"model.variant": "static", "embeddings.path": "word2vec"}}}}
    runs = expand_runs(recipe, name="kim")
    assert len(runs) == 8
    names = [n for n, _ in runs]
    assert names[0] == "kim/mr/seed=1/rand" and len(set(names)) == 8
    by_name = dict(runs)
    r = by_name["kim/subj/seed=2/static-w2v"]
    assert r == {"train": {"epochs": 3, "seed": 2}, "data": {"dataset": "subj"},
                 "model": {"variant": "static"}, "embeddings": {"path": "word2vec"}}
    assert expand_runs({"a": 1}, name="solo") == [("solo", {"a": 1})]


# -- one declaration per setting -----------------------------------------------------------------
@dataclass
class _Shape:
    size: int = internal()  # set from the data
    width: int = 3  # how wide
    tags: list[str] = field(default_factory=lambda: ["a"])  # a list default
    seed: int = internal(0)  # set by code


@dataclass
@with_settings_of(_Shape, after="kind")
class _Section:
    kind: str = "x"  # the section's first field
    extra: float = 0.5  # after the lent ones


def test_settings_of_leaves_out_the_internal_fields():
    assert [f.name for f in settings_of(_Shape)] == ["width", "tags"]


def test_with_settings_of_lends_fields_with_their_defaults_types_and_comments():
    assert [f.name for f in dataclasses.fields(_Section)] == ["kind", "width", "tags", "extra"]
    one, two = _Section(), _Section()
    assert (one.width, one.tags) == (3, ["a"]) and one.tags is not two.tags  # a fresh list each
    assert typing.get_type_hints(_Section)["tags"] == list[str]
    assert from_dict(_Section, {"width": 5, "tags": ["b"]}) == _Section(width=5, tags=["b"])
    with pytest.raises(TextCNNError, match=r"^width: expected int, got 'wide' \(str\)$"):
        from_dict(_Section, {"width": "wide"})
    assert field_comments(_Section) == {"kind": "the section's first field", "width": "how wide",
                                        "tags": "a list default", "extra": "after the lent ones"}
    assert field_comments(_Shape)["seed"] == "set by code"


def test_with_settings_of_refuses_a_field_declared_twice():
    with pytest.raises(TypeError, match="width already declared by _Shape"):
        @with_settings_of(_Shape)
        class Twice:
            width: int = 4
