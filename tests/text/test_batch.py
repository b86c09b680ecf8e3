"""Batch evaluation: expansion into runs, results.jsonl, tables, resuming, and the CI smoke batch."""

import csv
import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from textcnn.batch_runner import plan_runs, read_results, write_tables
from textcnn.cli import main
from textcnn.tasks import summarize

REPO = Path(__file__).resolve().parents[2]
KIM = REPO / "recipes" / "kim2014"
TINY = ["--set", "train.epochs=1", "--set", "model.maps=4", "--set", "model.embedding_dim=8",
        "--set", "model.widths=[2,3]", "--set", "train.progress=false", "--set", "embeddings.word2vec_epochs=1"]


def test_kim_recipes_expand_to_the_paper_protocol(monkeypatch):
    runs = plan_runs([KIM])
    names = {r.name for r in runs}
    for dataset in ("mr", "subj", "cr", "mpqa"):
        assert {f"{dataset}/rand/fold={k}" for k in range(10)} <= names
    for dataset in ("trec", "sst1", "sst2"):
        assert f"{dataset}/rand" in names and f"{dataset}/nbsvm" in names
    assert "sst2-sentences/rand" in names
    variants = {r.name.split("/")[1] for r in runs if r.name.startswith("mr/")}
    assert variants == {"rand", "static-word2vec", "non-static-word2vec", "multichannel-word2vec",
                        "static-minilm", "non-static-minilm", "multichannel-minilm", "tfidf-logreg", "nbsvm"}
    fold3 = next(r for r in runs if r.name == "mr/static-minilm/fold=3").recipe
    assert fold3["data"]["fold"] == 3 and fold3["model"]["variant"] == "static"
    assert fold3["embeddings"]["path"] == "minilm"
    assert len(plan_runs([KIM], folds=2, only=["mr/*", "trec/*"])) == 9 * 2 + 9


def test_seeds_repeat_runs_on_the_same_folds(tmp_path, monkeypatch):
    from textcnn.kim2014 import benchmark_splits
    from textcnn.recipe import text_recipe

    runs = plan_runs([KIM / "mr.yaml", KIM / "trec.yaml"], folds=2, only=["*/rand*"], seeds=[0, 2])
    assert [r.name for r in runs] == ["mr/rand/fold=0", "mr/rand/fold=0/seed=2", "mr/rand/fold=1",
                                      "mr/rand/fold=1/seed=2", "trec/rand", "trec/rand/seed=2"]
    # seed 0 keeps its plain name (an earlier batch's rows still count); the others train with
    # their seed on the folds of the recipe's own split seed
    seeded = text_recipe(runs[1].recipe)
    assert (seeded.train.seed, seeded.data.split_seed, seeded.data.fold) == (2, 0, 0)
    corpus = tmp_path / "rt-polarity.all"
    corpus.write_text("".join(f"{i % 2} sentence number {i}\n" for i in range(40)), encoding="latin-1")
    monkeypatch.setenv("TEXTCNN_DATA_DIR", str(tmp_path))
    plain = benchmark_splits(text_recipe(runs[0].recipe).data, seed=0)
    again = benchmark_splits(seeded.data, seed=seeded.train.seed)
    assert plain.test == again.test
    moved = benchmark_splits(text_recipe(runs[0].recipe).data, seed=2)
    assert moved.test != plain.test  # without split_seed the folds follow the training seed


def test_tables_have_mean_std_and_paper_figures(tmp_path):
    rows = [{"run": f"mr/rand/fold={k}", "model": "CNN-rand", "dataset": "mr", "accuracy": a}
            for k, a in enumerate([0.75, 0.77])]
    rows += [{"run": "trec/nbsvm", "model": "NBSVM", "dataset": "trec", "accuracy": 0.9}]
    rows += [{"run": "mr/rand-avg", "model": "CNN-rand [pooling=avg]", "dataset": "mr", "accuracy": 0.7}]
    stats = summarize(rows)
    assert stats[("CNN-rand", "mr")]["mean"] == pytest.approx(76.0)
    assert stats[("CNN-rand", "mr")]["std"] == pytest.approx(1.41421356, rel=1e-6)
    write_tables(rows, tmp_path)
    md = (tmp_path / "table.md").read_text().splitlines()
    assert md[0] == "| model | MR | TREC |"
    assert md[2].startswith("| CNN-rand | 76.0 ± 1.4 (n=2) [paper 76.1] | – |")
    # a choice of the model's menu is no row of the paper: no paper figure beside it
    assert "| CNN-rand [pooling=avg] | 70.0 ± 0.0 (n=1) | – |" in md
    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert {(r["model"], r["dataset"]) for r in table} == {("CNN-rand", "mr"), ("NBSVM", "trec"),
                                                          ("CNN-rand [pooling=avg]", "mr")}
    # the same figures as a chart: table.png, from the table's points
    from PIL import Image

    from textcnn.tasks import TASKS

    points = {(p.model, p.dataset): p for p in TASKS["text"].table(rows).chart}
    assert points[("CNN-rand", "MR")].mean == pytest.approx(76.0) and points[("CNN-rand", "MR")].reference == 76.1
    assert points[("CNN-rand", "MR")].std == pytest.approx(stats[("CNN-rand", "mr")]["std"])
    assert points[("NBSVM", "TREC")].reference is None and points[("NBSVM", "TREC")].n == 1
    assert points[("CNN-rand [pooling=avg]", "MR")].reference is None
    width, height = Image.open(tmp_path / "table.png").size
    assert width > 600 and height > 200


@pytest.mark.slow
def test_smoke_batch_two_datasets_one_fold_and_resume(tmp_path, shared_data, monkeypatch):
    """What CI runs: two datasets, --folds 1, a few epochs; checks the files, not the accuracies."""
    monkeypatch.setenv("TEXTCNN_DATA_DIR", str(shared_data / "kim2014"))
    out = tmp_path / "batch"
    args = ["batch", str(KIM / "mr.yaml"), str(KIM / "trec.yaml"), "--out", str(out), "--folds", "1",
            "--only", "*/rand*", "--only", "*/nbsvm*", "--only", "mr/static-word2vec/*", *TINY]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_results(out / "results.jsonl")
    assert sorted(r["run"] for r in rows) == ["mr/nbsvm/fold=0", "mr/rand/fold=0",
                                              "mr/static-word2vec/fold=0", "trec/nbsvm", "trec/rand"]
    required = {"run", "dataset", "model", "fold", "seed", "accuracy", "macro_f1", "epochs_run", "train_seconds"}
    for row in rows:
        assert required <= set(row) and 0 <= row["accuracy"] <= 1
        # how many batch shapes trained as CUDA graphs: none on CPU; baselines have no such step
        assert row["cuda_graphs"] == (None if row["model"] == "NBSVM" else 0)
    assert {r["model"] for r in rows} == {"CNN-rand", "NBSVM", "CNN-static (word2vec)"}
    md = (out / "table.md").read_text().splitlines()
    assert md[0] == "| model | MR | TREC |" and len(md) == 2 + 3 + 2
    # resume: a rerun skips every finished run and adds nothing
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert "5 already done, 0 to run" in again.output
    assert len(read_results(out / "results.jsonl")) == 5


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"run": "a"}) + "\n" + '{"run": "b", "accu')
    with pytest.warns(UserWarning, match="results.jsonl:2: skipped a line"):
        assert read_results(path) == [{"run": "a"}]


def test_failed_runs_keep_the_finished_ones(tmp_path, monkeypatch):
    """CR's file is absent here: its runs fail with a clear error, the others are kept."""
    monkeypatch.setenv("TEXTCNN_DATA_DIR", str(tmp_path / "nodata"))
    out = tmp_path / "batch"
    recipe = tmp_path / "sample.yaml"
    recipe.write_text(f"name: sample\ndata:\n  train: {REPO / 'data/sample/train.csv'}\n"
                      f"  test: {REPO / 'data/sample/test.csv'}\nmodel:\n  arch: nbsvm\n")
    result = CliRunner().invoke(main, ["batch", str(recipe), str(KIM / "cr.yaml"), "--out", str(out),
                                       "--folds", "1", "--only", "sample", "--only", "cr/nbsvm/*"])
    assert result.exit_code == 2
    assert "custrev.all: benchmark file not found" in result.output.replace("\r", "\n").splitlines()[-1]
    rows = read_results(out / "results.jsonl")
    assert [r["run"] for r in rows] == ["sample"] and rows[0]["model"] == "NBSVM"
    assert (out / "table.md").is_file()


@pytest.mark.slow
def test_parallel_workers_write_every_row(tmp_path):
    """--jobs 2: runs in spawned workers, rows written by the parent only, a failure reported."""
    recipe = tmp_path / "par.yaml"
    recipe.write_text(f"name: par\ndata:\n  train: {REPO / 'data/sample/train.csv'}\n"
                      f"  test: {REPO / 'data/sample/test.csv'}\nmodel:\n  arch: nbsvm\n"
                      "expand:\n  train.seed: [1, 2, 3]\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"name: broken\ndata:\n  train: {tmp_path / 'missing.csv'}\nmodel:\n  arch: nbsvm\n")
    out = tmp_path / "batch"
    result = CliRunner().invoke(main, ["batch", str(recipe), str(broken), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 2 and "missing.csv" in result.output
    rows = read_results(out / "results.jsonl")
    assert sorted(r["run"] for r in rows) == ["par/seed=1", "par/seed=2", "par/seed=3"]
    assert all(0 <= r["accuracy"] <= 1 for r in rows)


def test_bad_seeds_option_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["batch", str(KIM / "trec.yaml"), "--out", str(tmp_path / "b"),
                                       "--seeds", "0,one"])
    assert result.exit_code == 2
    assert "--seeds: expected comma-separated integers such as 0,1,2, got '0,one'" in result.output
    assert not (tmp_path / "b" / "results.jsonl").exists()


def test_fold_batched_batch_trains_each_cv_recipes_folds_together(tmp_path, monkeypatch):
    """--fold-batched: the CNN folds of a CV recipe are one task; rows, models and resume as usual."""
    from textcnn import TextCNNClassifier

    rng = __import__("random").Random(0)
    words = {0: ["dull", "flat", "bad"], 1: ["fun", "sharp", "good"]}
    lines = [f"{i % 2} {' '.join(rng.choice(words[i % 2]) for _ in range(3))} film number {i}\n"
             for i in range(60)]
    (tmp_path / "rt-polarity.all").write_text("".join(lines), encoding="latin-1")
    monkeypatch.setenv("TEXTCNN_DATA_DIR", str(tmp_path))
    out = tmp_path / "batch"
    args = ["batch", str(KIM / "mr.yaml"), "--out", str(out), "--folds", "3", "--only", "mr/rand/*",
            "--only", "mr/nbsvm/fold=0", "--fold-batched", "--set", "train.device=cpu", *TINY]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["run"]: r for r in read_results(out / "results.jsonl")}
    assert sorted(rows) == ["mr/nbsvm/fold=0", "mr/rand/fold=0", "mr/rand/fold=1", "mr/rand/fold=2"]
    assert [rows[f"mr/rand/fold={k}"]["fold_batched"] for k in range(3)] == [3, 3, 3]
    assert rows["mr/nbsvm/fold=0"]["fold_batched"] is None
    for k in range(3):
        row = rows[f"mr/rand/fold={k}"]
        assert row["fold"] == k and row["epochs_run"] == 1 and 0 <= row["accuracy"] <= 1
        assert row["precision"] == "float32"  # fit_folds multiplies in bf16 on CUDA only
        clf = TextCNNClassifier.load(out / "runs" / f"mr/rand/fold={k}" / "model")
        assert clf.model_.config.vocab_size == clf.tokenizer_.vocab_size
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert "4 already done, 0 to run" in again.output


def test_fold_groups_keep_seeds_and_non_cnn_runs_apart():
    from textcnn.batch_runner import fold_groups

    runs = plan_runs([KIM / "mr.yaml", KIM / "trec.yaml"], folds=3, seeds=[0, 1],
                     only=["mr/rand/*", "mr/nbsvm/*", "trec/rand*"])
    tasks = [[r.name for r in task] for task in fold_groups(runs, fold_batched=True)]
    assert ["mr/rand/fold=0", "mr/rand/fold=1", "mr/rand/fold=2"] in tasks
    assert ["mr/rand/fold=0/seed=1", "mr/rand/fold=1/seed=1", "mr/rand/fold=2/seed=1"] in tasks
    assert ["mr/nbsvm/fold=0"] in tasks and ["trec/rand"] in tasks and ["trec/rand/seed=1"] in tasks
    assert sorted(n for task in tasks for n in task) == sorted(r.name for r in runs)
    assert all(len(task) == 1 for task in fold_groups(runs, fold_batched=False))


def test_train_fold_recipes_refuses_recipes_that_differ_beyond_the_fold(tmp_path):
    from textcnn.core.errors import TextCNNError
    from textcnn.pipeline import train_fold_recipes
    from textcnn.recipe import text_recipe

    runs = plan_runs([KIM / "mr.yaml"], folds=2, only=["mr/rand/*"])
    recipes = [text_recipe(r.recipe) for r in runs]
    recipes[1].model.maps = 7
    with pytest.raises(TextCNNError, match="expected Kim CNN recipes that differ only in data.fold"):
        train_fold_recipes(recipes, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(TextCNNError, match="one output directory per recipe"):
        train_fold_recipes(recipes, [tmp_path / "a"])


def sample_recipe(tmp_path, *, name="sample", test=True, extra="") -> Path:
    """An NBSVM recipe (fast to fit) on a copy of the sample data, repeated for seeds 1 and 2."""
    train = tmp_path / "train.csv"
    if not train.exists():
        train.write_bytes((REPO / "data/sample/train.csv").read_bytes())
    recipe = tmp_path / f"{name}.yaml"
    test_line = f"  test: {REPO / 'data/sample/test.csv'}\n" if test else ""
    recipe.write_text(f"name: {name}\ndata:\n  train: {train}\n{test_line}model:\n  arch: nbsvm\n"
                      f"expand:\n  train.seed: [1, 2]\n{extra}")
    return recipe


def batch(*args):
    return CliRunner().invoke(main, ["batch", *map(str, args)])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


def test_rows_carry_fingerprints_and_a_changed_run_is_refused_or_rerun(tmp_path):
    from textcnn.core.rundir import read_run_record
    from textcnn.pipeline import text_run_identity
    from textcnn.recipe import text_recipe

    recipe, out = sample_recipe(tmp_path), tmp_path / "batch"
    assert batch(recipe, "--out", out).exit_code == 0
    rows = read_results(out / "results.jsonl")
    for run in plan_runs([recipe]):
        row = next(r for r in rows if r["run"] == run.name)
        assert row["fingerprint"] == text_run_identity(text_recipe(run.recipe)).fingerprint
        assert row["fingerprint"] == read_run_record(out / "runs" / run.name)["fingerprint"]
    assert "2 already done, 0 to run" in batch(recipe, "--out", out).output
    before = (out / "results.jsonl").read_bytes(), (out / "table.md").read_bytes()
    changed = one_line_error(batch(recipe, "--out", out, "--set", "tokenizer.min_frequency=2"))
    assert changed == (f"Error: batch: 2 run(s) in {out} differ from the recipes now, e.g. "
                       "'sample/seed=1': tokenizer.min_frequency: 1 -> 2; pass --overwrite to rerun "
                       "them (their rows are replaced), or choose another --out")
    assert ((out / "results.jsonl").read_bytes(), (out / "table.md").read_bytes()) == before
    rerun = batch(recipe, "--out", out, "--set", "tokenizer.min_frequency=2", "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert "0 already done, 2 to run (2 changed, rerun)" in rerun.output
    new_rows = read_results(out / "results.jsonl")
    assert sorted(r["run"] for r in new_rows) == ["sample/seed=1", "sample/seed=2"]
    assert not {r["fingerprint"] for r in new_rows} & {r["fingerprint"] for r in rows}
    data = tmp_path / "train.csv"
    data.write_text(data.read_text().replace(",positive", ",POSITIVE"))
    assert "train.csv): content changed" in one_line_error(
        batch(recipe, "--out", out, "--set", "tokenizer.min_frequency=2"))


def test_a_run_without_a_test_split_finishes_and_the_table_shows_it(tmp_path):
    out = tmp_path / "batch"
    result = batch(sample_recipe(tmp_path, test=False), "--out", out)
    assert result.exit_code == 0, result.output
    assert "done sample/seed=1: no test split" in result.output
    assert [r["accuracy"] for r in read_results(out / "results.jsonl")] == [None, None]
    assert "| NBSVM | no test split (n=2) |" in (out / "table.md").read_text()
    assert list(csv.DictReader((out / "table.csv").open()))[0]["n"] == "2"


def test_only_that_matches_no_run_is_an_error(tmp_path):
    line = one_line_error(batch(sample_recipe(tmp_path), "--out", tmp_path / "b", "--only", "sample/*",
                                "--only", "smaple/*"))
    assert line == ("Error: --only 'smaple/*': expected a pattern matching some of the 2 runs of these "
                    "recipes (named like 'sample/seed=1'), got none")
    assert not (tmp_path / "b").exists()


def test_run_names_cannot_lead_writes_outside_out(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    escape = sample_recipe(work, name="x", extra="").read_text().replace("name: x", "name: ../escape")
    (work / "x.yaml").write_text(escape)
    line = one_line_error(batch(work / "x.yaml", "--out", work / "b"))
    assert "x.yaml: name: expected a run name without '/', '\\' or '..'" in line and "'../escape'" in line
    label = sample_recipe(work, name="y", extra="  data.train: [../../up.csv]\n")
    line = one_line_error(batch(label, "--out", work / "b"))
    assert "y.yaml: expand.data.train: expected a run name" in line and "'../../up.csv'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert not (work / "b").exists()


def test_a_torn_results_line_is_cut_off_and_its_run_redone(tmp_path):
    """A crash while the last row was written: the rerun warns, reruns that run and appends its
    row on a line of its own."""
    recipe, out = sample_recipe(tmp_path), tmp_path / "batch"
    assert batch(recipe, "--out", out).exit_code == 0
    results = out / "results.jsonl"
    first, second = results.read_text().splitlines()
    results.write_text(first + "\n" + second[: len(second) // 2])
    with pytest.warns(UserWarning) as caught:
        again = batch(recipe, "--out", out)
    assert again.exit_code == 0, again.output
    assert "1 already done, 1 to run" in again.output
    assert any("dropped a torn last line" in str(w.message) for w in caught)
    assert [json.loads(line)["run"] for line in results.read_text().splitlines()] == \
        [json.loads(first)["run"], json.loads(second)["run"]]


def test_rows_from_before_fingerprints_count_by_name_with_a_note_and_overwrite_reruns_them(tmp_path):
    recipe, out = sample_recipe(tmp_path), tmp_path / "batch"
    out.mkdir()
    old_row = {"run": "sample/seed=1", "model": "NBSVM", "dataset": "old", "accuracy": 0.5}
    (out / "results.jsonl").write_text(json.dumps(old_row) + "\n")
    result = batch(recipe, "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 row(s) in" in result.output and "carry no fingerprint" in result.output
    assert "1 already done, 1 to run" in result.output
    assert read_results(out / "results.jsonl")[0] == old_row
    rerun = batch(recipe, "--out", out, "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert "1 already done, 1 to run (1 changed, rerun)" in rerun.output
    rows = read_results(out / "results.jsonl")
    assert sorted(r["run"] for r in rows) == ["sample/seed=1", "sample/seed=2"]
    assert all(len(r["fingerprint"]) == 64 for r in rows)


def test_plot_table_script_draws_a_results_file(tmp_path):
    import importlib.util

    from PIL import Image

    rows = [{"run": f"mr/rand/fold={k}", "task": "text", "model": "CNN-rand", "dataset": "mr", "accuracy": a}
            for k, a in enumerate([0.75, 0.77, 0.76])]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = importlib.util.spec_from_file_location("plot_table", REPO / "scripts" / "plot_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = module.main([str(tmp_path / "results.jsonl"), str(tmp_path / "img" / "chart.png")])
    assert Image.open(path).size[0] > 300
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(Exception, match="expected finished text runs"):
        module.main([str(tmp_path / "empty.jsonl"), str(tmp_path / "x.png")])


def test_ablation_table_script_shows_accuracy_and_the_selected_epochs(tmp_path):
    import importlib.util

    rows = [{"run": f"ablation/{act}/{pool}/fold={k}", "task": "text", "dataset": "mr", "fold": k,
             "model": f"CNN-rand [{act}, {pool}]", "accuracy": acc, "best_epoch": epoch}
            for act, pool, k, acc, epoch in [("relu", "max", 0, 0.75, 9), ("relu", "max", 1, 0.77, 7),
                                             ("tanh", "avg", 0, 0.70, 3)]]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = importlib.util.spec_from_file_location("ablation_table", REPO / "scripts" / "ablation_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = tmp_path / "text.md"
    doc.write_text(f"before\n{module.MARKER}\nold table\n{module.MARKER}\nafter\n")
    text = module.main([str(tmp_path / "results.jsonl"), "--doc", str(doc), "--out", str(tmp_path / "out")])
    lines = text.splitlines()
    assert lines[0] == "| activation \\ pooling | max | avg |"
    # relu/max: mean and sample std of 75 and 77
    assert lines[2] == f"| relu | 76.0 ± {statistics.stdev([75.0, 77.0]):.1f} (n=2; epochs 9/7) | – |"
    assert lines[3] == "| tanh | – | 70.0 ± 0.0 (n=1; epochs 3) |"
    assert doc.read_text() == f"before\n{module.MARKER}\n{text}\n{module.MARKER}\nafter\n"
    # --out holds the batch's own files, as `textcnn batch` writes them from the same rows
    assert read_results(tmp_path / "out" / "results.jsonl") == rows
    write_tables(rows, tmp_path)
    for name in ("table.md", "table.csv"):
        assert (tmp_path / "out" / name).read_text() == (tmp_path / name).read_text()
    assert (tmp_path / "out" / "table.png").read_bytes()[:4] == b"\x89PNG"
    doc.write_text("no markers\n")
    with pytest.raises(Exception, match="expected two"):
        module.main([str(tmp_path / "results.jsonl"), "--doc", str(doc)])


def test_set_wins_over_a_runs_own_value_in_expand(tmp_path):
    """`--set` is the last word: a key that a run's expand entry sets takes the command line's
    value for every run, and the others keep their own values."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {train: data/sample/train.csv}\n"
                      "expand:\n  model:\n    a: {model.variant: rand, model.word_dropout: 0.2}\n"
                      "    b: {model.variant: rand, model.dropout: 0.3}\n")
    plain = {run.name: run.checked().model for run in plan_runs([recipe])}
    assert (plain["r/a"].word_dropout, plain["r/b"].word_dropout, plain["r/b"].dropout) == (0.2, 0.0, 0.3)
    runs = {run.name: run.checked().model for run in plan_runs([recipe], overrides=["model.word_dropout=0.1"])}
    assert (runs["r/a"].word_dropout, runs["r/b"].word_dropout, runs["r/b"].dropout) == (0.1, 0.1, 0.3)
