"""The optional extras: what `textcnn export` and `textcnn serve` tell a user to install exists in
pyproject.toml and brings the packages they import, and the `dev` extra (what scripts/setup.sh
installs for the README's test command, which CI runs) holds them, so that the export and
server tests run in CI instead of skipping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from textcnn.core import onnx as core_onnx
from textcnn.core.errors import TextCNNError

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]


def names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings, without versions or extras."""
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def installed_extra(hint: str) -> str:
    """The extra that an install hint such as `pip install 'textcnn[onnx]'` names."""
    match = re.fullmatch(r"pip install 'textcnn\[(\w+)\]'", hint)
    assert match, hint
    return match.group(1)


def skipped_without(test_file: str) -> set[str]:
    """The modules whose absence makes a test file skip (its `pytest.importorskip` calls)."""
    return set(re.findall(r'importorskip\("(\w+)"', (ROOT / "tests" / test_file).read_text(encoding="utf-8")))


def test_the_install_hints_name_extras_that_bring_what_is_imported():
    from textcnn import serve  # imports neither fastapi nor uvicorn until it serves

    assert names(EXTRAS[installed_extra(core_onnx.INSTALL)]) >= {"onnx", "onnxruntime"}
    assert names(EXTRAS[installed_extra(serve.INSTALL)]) >= {"fastapi", "uvicorn"}


def test_the_dev_extra_holds_every_package_the_deploy_and_serve_tests_need():
    dev = names(EXTRAS["dev"])
    for extra in ("onnx", "serve"):
        assert names(EXTRAS[extra]) <= dev, extra
    needed = skipped_without("test_deploy.py") | skipped_without("test_serve.py")
    assert needed >= {"onnxruntime", "fastapi", "uvicorn"}  # the parser sees the files' skips
    assert needed <= dev  # module and distribution names agree for these packages
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    installed = re.search(r'-e "\.\[([a-z,]+)\]"', setup)
    assert installed and "dev" in installed.group(1).split(",") and "scripts/setup.sh" in (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")


def test_without_the_extras_the_commands_say_in_one_line_how_to_install_them(monkeypatch):
    import sys

    from textcnn import serve

    for module in ("onnx", "onnxruntime", "fastapi", "uvicorn"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    for require, hint, first in ((core_onnx.require_onnx, core_onnx.INSTALL, "onnx"),
                                 (serve.require_server, serve.INSTALL, "fastapi")):
        with pytest.raises(TextCNNError, match=re.escape(hint)) as err:
            require("textcnn export")
        assert "\n" not in str(err.value) and f"({first} is missing)" in str(err.value)
