"""The `textcnn` CLI: train, evaluate, predict, batch; help with examples; errors exit 2 in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from textcnn.cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "model.maps=8", "--set", "model.embedding_dim=16", "--set", "model.widths=[2,3]",
        "--set", "train.epochs=3", "--set", "train.progress=false"]


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "run"
    result = CliRunner().invoke(main, ["train", str(REPO / "recipes/quickstart.yaml"), "--out", str(out),
                                       "--seed", "3", *FAST], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_help_and_version_have_examples():
    top = run("--help")
    assert top.exit_code == 0 and "Example" in top.output and "textcnn train" in top.output
    assert run("-h").output == top.output
    assert "0.1.0" in run("--version").output
    for command in ("train", "evaluate", "predict", "batch"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output and f"textcnn {command}" in result.output


def test_train_writes_model_recipe_and_metrics(trained):
    assert (trained / "model" / "model.safetensors").is_file()
    resolved = (trained / "recipe.yaml").read_text()
    assert "maps: 8" in resolved and "seed: 3" in resolved and "dropout: 0.5" in resolved
    assert (trained / "model" / "recipe.yaml").read_text() == resolved
    metrics = json.loads((trained / "results.json").read_text())
    assert metrics["seed"] == 3 and 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs_run"] == 3
    lines = (trained / "train" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_predict_text_jsonl_and_stdin(trained):
    model = trained / "model"
    text = run("predict", model, "a clever film", "a dull film", "--top-k", "2")
    lines = text.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("\ta clever film")
    assert "positive" in lines[0] and "negative" in lines[0]
    out = run("predict", model, "--input", "-", "--format", "jsonl", input="great acting\n\nskip it\n")
    rows = [json.loads(line) for line in out.output.strip().splitlines()]
    assert [r["text"] for r in rows] == ["great acting", "", "skip it"]
    for r in rows:
        assert len(r["labels"]) == 1 and 0 <= r["labels"][0]["probability"] <= 1


def test_evaluate_text_json_and_plot(trained, tmp_path):
    data = REPO / "data/sample/test.csv"
    text = run("evaluate", trained / "model", "--data", data)
    assert "accuracy" in text.output and "confusion matrix" in text.output
    report = json.loads(run("evaluate", trained / "model", "--data", data, "--json").output)
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == 100 == report["examples"]
    assert report["accuracy"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 100)
    png = tmp_path / "cm.png"
    run("evaluate", trained / "model", "--data", data, "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bad(tmp_path, *args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # progress bars (on stderr, mixed in here) may come first; the error is the last line
    message = result.output.replace("\r", "\n").strip().splitlines()[-1]
    assert message.startswith("Error: ")
    return message


def test_errors_are_one_line_exit_2(trained, tmp_path):
    recipe = REPO / "recipes/quickstart.yaml"
    assert "did you mean 'dropout'" in bad(tmp_path, "train", recipe, "--set", "model.dropot=0.3")
    assert "model.dropout: expected float" in bad(tmp_path, "train", recipe, "--set", "model.dropout=high")
    assert "expected KEY=VALUE" in bad(tmp_path, "train", recipe, "--set", "oops")
    kim = tmp_path / "bad.all"
    kim.write_bytes(b"1 a fine line\nnot-a-label text\n")
    assert f"{kim}:2" in bad(tmp_path, "evaluate", trained / "model", "--data", kim, "--format", "kim")
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("text,label\ngood,positive\nmeh,neutral\n")
    assert "'neutral' was never seen in training" in bad(tmp_path, "evaluate", trained / "model", "--data", unseen)
    assert "missing.csv" in bad(tmp_path, "evaluate", trained / "model", "--data", tmp_path / "missing.csv")
    assert "expected a model directory" in bad(tmp_path, "predict", tmp_path, "hello")
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    assert bad(tmp_path, "evaluate", trained / "model", "--data", REPO / "data/sample/test.csv",
               "--plot", a_file / "cm.png") == f"Error: {a_file}: expected a folder, got a file"


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "textcnn.cli", "train", str(REPO / "recipes/quickstart.yaml"),
                           "--set", "model.variant=dynamic"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "model.variant: expected one of" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_data_fetch_from_a_local_mirror_and_offline_error(tmp_path, shared_data):
    dest = tmp_path / "kim"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "TREC.test.all").write_bytes((shared_data / "kim2014" / "TREC.test.all").read_bytes())
    message = bad(tmp_path, "data", "fetch", "kim2014", "--dest", dest, "--from", mirror)
    assert "TREC.train.all" in message and "custrev.all" in message
    assert (dest / "TREC.test.all").is_file()  # what was fetched is kept
    assert "Example" in run("data", "fetch", "--help").output


@pytest.mark.parametrize(("args", "command", "fragment"), [
    (["predict", "MODEL", "x", "--threshold", "1.5"], "predict",
     "Invalid value for '--threshold': 1.5 is not in the range 0<=x<=1"),
    (["predict", "MODEL", "x", "--top-k", "0"], "predict", "Invalid value for '--top-k': 0 is not in the range x>=1"),
    (["predict", "MODEL", "--input", "DIR"], "predict", "Invalid value for '--input': File 'DIR' is a directory"),
    (["predict"], "predict", "Missing argument 'MODEL'"),
    (["train", "RECIPE", "--bogus"], "train", "No such option '--bogus'"),
    (["trian"], "", "No such command 'trian'"),
    (["--bogus"], "", "No such option '--bogus'"),
    (["data", "fetch", "kim2015"], "data fetch", "'kim2015' is not one of 'kim2014', 'sst'"),
    (["batch", "RECIPE", "--out", "DIR", "--jobs", "0"], "batch", "Invalid value for '--jobs': 0 is not in the range x>=1"),
])
def test_click_usage_errors_are_one_line_exit_2(trained, tmp_path, args, command, fragment):
    names = {"MODEL": str(trained / "model"), "DIR": str(tmp_path), "RECIPE": str(REPO / "recipes/quickstart.yaml")}
    result = CliRunner().invoke(main, [names.get(a, a) for a in args], prog_name="textcnn")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Usage:" not in result.stderr and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    hint = f" (see '{' '.join(['textcnn', command]).strip()} --help')"
    assert line.startswith("Error: ") and line.endswith(hint), line
    assert fragment.replace("DIR", str(tmp_path)) in line


def test_a_real_process_shows_a_usage_error_in_one_line_and_help_still_works():
    proc = subprocess.run([sys.executable, "-m", "textcnn.cli", "predict", "--top-k", "0", "m", "x"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["Error: Invalid value for '--top-k': 0 is not in the range x>=1 "
                                        "(see 'python -m textcnn.cli predict --help')"]
    bare = CliRunner().invoke(main, ["data"])  # a group without its command shows its help
    assert "Usage:" in bare.output and "fetch" in bare.output
