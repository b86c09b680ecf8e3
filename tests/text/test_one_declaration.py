"""Each setting is declared once: Kim's hyper-parameters in `KimCNNConfig`, the others in their
recipe section; the recipe's model section and `TextCNNClassifier`'s parameters (names, defaults,
docs) come from those declarations, and the generated `__init__` is a scikit-learn one."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from textcnn import TextCNNClassifier
from textcnn.core.config import field_comments, settings_of
from textcnn.model import KimCNNConfig
from textcnn.recipe import (
    ESTIMATOR_DEFAULTS,
    ESTIMATOR_NAMES,
    ESTIMATOR_SECTIONS,
    RECIPE_ONLY,
    ModelSection,
    recipe_from_estimator_params,
    text_recipe,
)

REPO = Path(__file__).resolve().parents[2]
SIGNATURE = inspect.signature(TextCNNClassifier).parameters


def _default(f: dataclasses.Field):
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def test_kim_settings_have_one_name_default_and_comment_in_config_recipe_and_estimator():
    kim = settings_of(KimCNNConfig)
    assert [f.name for f in kim] == ["variant", "widths", "maps", "dropout", "max_norm", "embedding_dim",
                                     "activation", "pooling", "k", "batch_norm", "weight_norm", "input_noise",
                                     "word_dropout"]
    section = {f.name: f for f in dataclasses.fields(ModelSection)}
    config_comments, section_comments = field_comments(KimCNNConfig), field_comments(ModelSection)
    for f in kim:
        assert _default(section[f.name]) == _default(f), f.name
        expected = tuple(_default(f)) if isinstance(_default(f), list) else _default(f)
        assert SIGNATURE[f.name].default == expected, f.name
        assert section_comments[f.name] == config_comments[f.name] != "", f.name
        assert config_comments[f.name] in TextCNNClassifier.__doc__.replace("\n" + " " * 12, " ")


def test_every_section_setting_is_a_parameter_with_the_recipes_default():
    expected = {"out_dir": None}
    for section, cls in ESTIMATOR_SECTIONS.items():
        for f in settings_of(cls):
            key = f"{section}.{f.name}"
            if key not in RECIPE_ONLY:
                name = ESTIMATOR_NAMES.get(key, f.name)
                value = ESTIMATOR_DEFAULTS.get(name, _default(f))
                expected[name] = tuple(value) if isinstance(value, list) else value
    assert {name: p.default for name, p in SIGNATURE.items()} == expected
    assert TextCNNClassifier().get_params() == expected
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in SIGNATURE.values())


def test_recipe_and_estimator_parameters_round_trip():
    recipe = text_recipe({"data": {"train": "x.csv"}, "model": {"widths": [2, 5], "maps": 7, "dropout": 0.2},
                          "tokenizer": {"max_size": 900}, "embeddings": {"word2vec_epochs": 3},
                          "train": {"epochs": 4, "progress": False, "lr": 0.5}})
    params = recipe.estimator_params()
    assert (params["widths"], params["maps"], params["max_vocab"], params["verbose"]) == ((2, 5), 7, 900, False)
    back = recipe_from_estimator_params(TextCNNClassifier(**params).get_params())
    for section in ESTIMATOR_SECTIONS:
        assert getattr(back, section) == getattr(recipe, section), section
    assert back.model.kim_config(vocab_size=10, num_classes=2) == KimCNNConfig(
        vocab_size=10, num_classes=2, widths=[2, 5], maps=7, dropout=0.2)


def test_generated_init_is_a_scikit_learn_init():
    est = TextCNNClassifier(maps=7, widths=[2, 3], verbose=True)
    assert est.widths == [2, 3] and est.get_params()["widths"] is est.widths  # stored as given
    assert repr(est) == "TextCNNClassifier(maps=7, verbose=True, widths=[2, 3])"  # changed ones only
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert twin.set_params(maps=3, dropout=0.1) is twin and (twin.maps, twin.dropout) == (3, 0.1)
    assert est.maps == 7
    with pytest.raises(ValueError, match="Invalid parameter 'mapz'"):
        twin.set_params(mapz=3)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'mapz' \(did you mean 'maps'\?\)"):
        TextCNNClassifier(mapz=3)
    with pytest.raises(TypeError):
        TextCNNClassifier("rand")  # keyword-only, as the signature says
    assert pickle.loads(pickle.dumps(est)).get_params() == est.get_params()


def test_a_fitted_estimator_pickles_and_predicts_the_same():
    texts, labels = ["good film", "bad film", "great fun", "awful mess"] * 10, ["p", "n", "p", "n"] * 10
    fitted = TextCNNClassifier(maps=4, embedding_dim=8, widths=(2,), epochs=1, threads=1).fit(texts, labels)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(texts), fitted.predict_proba(texts))


def test_a_field_added_to_kim_config_is_a_recipe_key_and_a_parameter(tmp_path):
    """Edit one line of a copy of textcnn/model.py: the new setting is a recipe key, an estimator
    parameter with the same default, documented by its comment, and reaches the model config."""
    copy = tmp_path / "textcnn"
    shutil.copytree(REPO / "textcnn", copy, ignore=shutil.ignore_patterns("__pycache__"))
    model = copy / "model.py"
    anchor = "    maps: int = 100  #"
    source = model.read_text(encoding="utf-8")
    assert source.count(anchor) == 1
    model.write_text(source.replace(anchor, "    gain: float = 1.5  # a new hyper-parameter\n" + anchor),
                     encoding="utf-8")
    probe = textwrap.dedent("""
        from textcnn import TextCNNClassifier
        from textcnn.recipe import text_recipe, recipe_from_estimator_params
        recipe = text_recipe({"data": {"train": "x.csv"}, "model": {"gain": 2.5}})
        assert recipe.model.gain == 2.5 and recipe.estimator_params()["gain"] == 2.5
        assert TextCNNClassifier().get_params()["gain"] == 1.5
        assert "gain=1.5 (model.gain): a new hyper-parameter" in TextCNNClassifier.__doc__
        settings = recipe_from_estimator_params(TextCNNClassifier(gain=0.5).get_params())
        assert settings.model.kim_config(vocab_size=5, num_classes=2).gain == 0.5
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
