"""Architecture search on image data, end to end through the CLI: build, leaderboard, predict, export-arch.

The images are scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), written as a pixel CSV the way
MNIST is (one column per pixel, then the label), so the test needs no download (fixture ``digits_csv`` in
conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from daedalus.interfaces.cli import main
from tests.conftest import reviewer_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_run(digits_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "digits"
    code = main(["build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--trials", "4",
                 "--final-epochs", "4", "--time", "300", "--max-params", "50000", "--designer", "evolution",
                 "--run", str(run), "--quiet", "--threads", "1"])
    assert code == 0
    reviewer_key("tester")  # decisions are signed
    assert main(["approve", str(run), "--by", "tester", "--reason", "image test"]) == 0  # before predict
    return run


def test_build_records_trials_and_a_final_network(image_run: Path) -> None:
    board = json.loads((image_run / "leaderboard.json").read_text())
    trials = [row for row in board if row["designer"] != "final"]
    final = [row for row in board if row["designer"] == "final"]
    assert len(trials) == 4 and len(final) == 1
    assert board[0] is final[0] or board[0]["designer"] == "final"  # the model the run hands back comes first
    assert final[0]["epochs"] == 4
    assert all(row["params"] <= 50000 for row in board)  # the hard constraint held for every candidate
    assert {row["family"] for row in trials} == {"cnn"}
    events = [json.loads(line)["event"] for line in (image_run / "audit.jsonl").read_text().splitlines()]
    assert events.count("trial_result") == 4 and "final_model_saved" in events


def test_the_search_starts_from_the_allowed_portfolio_designs(image_run: Path) -> None:
    from daedalus.evaluation.nas_train import count_params
    from daedalus.spaces.nas.cnn import CNNSpace

    space = CNNSpace()
    allowed = [space.to_string(g) for g in space.portfolio()
               if count_params(space.instantiate(g, in_shape=(1, 8, 8), n_outputs=10)) <= 50000]
    assert 0 < len(allowed) < len(space.portfolio())  # the test covers both sides of the constraint
    trials = sorted((row for row in json.loads((image_run / "leaderboard.json").read_text())
                     if row["designer"] != "final"), key=lambda row: row["trial"])
    assert [row["architecture"] for row in trials[:len(allowed)]] == allowed
    assert {row["designer"] for row in trials[:len(allowed)]} == {"portfolio"}
    assert {row["designer"] for row in trials[len(allowed):]} == {"evolution"}


def test_predict_reads_raw_pixel_rows(image_run: Path, digits_csv: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.csv"
    assert main(["predict", str(image_run), str(digits_csv), "--out", str(out), "--proba"]) == 0
    pred = pd.read_csv(out)
    truth = pd.read_csv(digits_csv)["digit"]
    assert list(pred.columns[:2]) == ["prediction", "proba_0"]
    assert (pred["prediction"] == truth).mean() > 0.5  # chance is 0.1
    np.testing.assert_allclose(pred.filter(like="proba_").sum(axis=1), 1.0, atol=1e-5)


def test_the_metric_gate_recomputes_an_image_runs_accuracy_from_its_held_out_images(
        image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = Path(shutil.copytree(image_run, tmp_path / "run"))
    policy = tmp_path / "strict.toml"
    policy.write_text("[gates]\nmin_metric = 0.9999\n")
    capsys.readouterr()
    assert main(["approve", str(run), "--by", "tester", "--reason", "strict", "--policy", str(policy)]) == 1
    out = capsys.readouterr().out
    assert "NOT MET  min_metric: validation accuracy" in out and "held-out images" in out


def test_the_model_card_reports_the_network_and_its_held_out_classes(image_run: Path, digits_csv: Path,
                                                                      tmp_path: Path) -> None:
    card = json.loads((image_run / "model_card.json").read_text())
    assert "image classifier" in (image_run / "model_card.md").read_text()
    final = json.loads((image_run / "leaderboard.json").read_text())[0]
    assert final["designer"] == "final" and final["architecture"] in card["model_details"]["model_type"]
    quantitative = card["quantitative_analyses"]
    per_class = quantitative["per_class"]
    held_out = quantitative["held_out_accuracy"]
    assert [row["class"] for row in per_class] == [str(d) for d in range(10)]
    assert sum(row["images"] for row in per_class) == held_out["images"] == 360  # 20% of 1,797, stratified
    lo, hi = held_out["ci95"]
    assert lo <= held_out["accuracy"] <= hi < 1.0 or held_out["accuracy"] == 1.0
    recall_weighted = sum(row["recall"] * row["images"] for row in per_class) / held_out["images"]
    assert recall_weighted == pytest.approx(held_out["accuracy"])
    # Oracle: the run's own predict on the held-out rows of the original file gives the same accuracy.
    rows = np.load(image_run / "holdout_predictions.npz")["rows"]
    frame = pd.read_csv(digits_csv).iloc[rows]
    frame.to_csv(tmp_path / "held_out.csv", index=False)
    assert main(["predict", str(image_run), str(tmp_path / "held_out.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")["prediction"].to_numpy()
    assert (predicted == frame["digit"].to_numpy()).mean() == pytest.approx(held_out["accuracy"])
    events = [json.loads(line)["event"] for line in (image_run / "audit.jsonl").read_text().splitlines()]
    assert "holdout_predictions" in events and "model_card" in events


def _load_exported(path: Path) -> tuple[torch.nn.Module, Any]:
    """The exported file imported as a module, and its Net with the exported weights."""
    spec = importlib.util.spec_from_file_location("exported_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net: torch.nn.Module = module.Net()
    net.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
    return net.eval(), module


def test_export_round_trip_reproduces_the_runs_predictions(image_run: Path, digits_csv: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "export" / "model.py"
    assert main(["export-arch", str(image_run), "--out", str(out)]) == 0
    source = out.read_text()
    assert "class Net(" in source and "daedalus" not in source.split('"""', 2)[-1].split("import", 1)[0]
    net, exported = _load_exported(out)
    frame = pd.read_csv(digits_csv)
    pixels = frame.drop(columns="digit").to_numpy(np.float32).reshape(-1, 1, 8, 8)
    images = torch.tensor((pixels / exported.SCALE - exported.MEAN[0]) / exported.STD[0])
    with torch.no_grad():
        proba = torch.softmax(net(images), dim=1).numpy()
    pred_file = tmp_path / "pred.csv"
    assert main(["predict", str(image_run), str(digits_csv), "--out", str(pred_file), "--proba"]) == 0
    expected = pd.read_csv(pred_file)
    np.testing.assert_allclose(proba, expected.filter(like="proba_").to_numpy(), atol=1e-5)
    assert (proba.argmax(axis=1) == expected["prediction"].to_numpy()).all()


def test_export_a_trial_and_refuse_a_missing_one(image_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trial0.py"
    assert main(["export-arch", str(image_run), "--trial", "0", "--out", str(out)]) == 0
    assert isinstance(_load_exported(out)[0], torch.nn.Module)
    capsys.readouterr()
    assert main(["export-arch", str(image_run), "--trial", "99", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "trial 99" in err and "\n" not in err


@pytest.mark.parametrize(("shape", "message"), [("28by28", "HEIGHTxWIDTHxCHANNELS"),
                                                ("4x4x1", "needs 16 pixel columns but the file has 64")])
def test_bad_image_input_is_one_line_exit_2(digits_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            shape: str, message: str) -> None:
    code = main(["build", str(digits_csv), "--target", "digit", "--image-shape", shape, "--run",
                 str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing was created for bad input


def test_multi_objective_search_writes_the_pareto_front(digits_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "pareto"
    assert main(["build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--trials", "6",
                 "--final-epochs", "1", "--time", "300", "--max-params", "20000", "--objective", "accuracy,params",
                 "--designer", "random", "--run", str(run), "--quiet", "--threads", "1"]) == 0
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["objectives"] == ["accuracy", "params"]
    board = [r for r in json.loads((run / "leaderboard.json").read_text()) if r["designer"] != "final"]
    assert board and all(r["designer"] == "pareto" for r in board)
    front = pareto["front"]
    assert front and {r["trial"] for r in front} == {r["trial"] for r in board if r["pareto"]}
    # The oracle: no searched network is at least as accurate and cheaper than a front member, or the reverse.
    for member in front:
        for other in board:
            dominates = (other["score"] >= member["score"] and other["params"] <= member["params"]
                         and (other["score"], other["params"]) != (member["score"], member["params"]))
            assert not dominates, (member, other)


def test_an_image_run_resumes_with_its_trials(digits_csv: Path, tmp_path: Path) -> None:
    """A run cut short after its search is resumed: the trials on disk are kept, the designer continues from the
    state stored after its last tell (designer.json), the search goes on with new trial numbers, and a final
    network is trained."""
    run = tmp_path / "resumable"
    assert main(["build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--trials", "3",
                 "--final-epochs", "1", "--time", "300", "--max-params", "50000", "--designer", "evolution",
                 "--run", str(run), "--quiet", "--threads", "1"]) == 0
    # Simulate a kill during the final training: drop the final model and its record.
    import shutil

    shutil.rmtree(run / "model")
    final = max(run.glob("trials/*/trial.json"), key=lambda p: p.parent.name)
    if json.loads(final.read_text())["designer"] == "final":
        shutil.rmtree(final.parent)
    options = json.loads((run / "run.json").read_text())["options"]
    options["n_candidates"] = 5  # two more candidates than the first session ran
    info = json.loads((run / "run.json").read_text())
    info["options"] = options
    (run / "run.json").write_text(json.dumps(info))
    assert main(["resume", str(run), "--quiet"]) == 0
    board = json.loads((run / "leaderboard.json").read_text())
    searched = sorted(r["trial"] for r in board if r["designer"] != "final")
    assert searched == [0, 1, 2, 3, 4]
    assert (run / "model" / "weights.pt").exists()
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    (resumed,) = [r for r in records if r["event"] == "resumed"]
    assert resumed["trials_restored"] == 3
    state = json.loads((run / "designer.json").read_text())
    assert isinstance(state, dict) and state  # the designer's own state, stored with the run after each tell
    assert not list(run.glob("trials/*/checkpoint.pt"))  # a candidate's checkpoint goes when its evaluation ends


def test_two_candidates_train_at_once_and_the_search_is_the_same(image_run: Path, digits_csv: Path,
                                                                  tmp_path: Path) -> None:
    """--workers 2: a rung's candidates train side by side, and the bracket tells the designer the same results in
    the same order, so the candidates and their scores are the module run's own (1 worker, 1 thread each too)."""
    run = tmp_path / "two"
    assert main(["build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--trials", "4",
                 "--final-epochs", "4", "--time", "300", "--max-params", "50000", "--designer", "evolution",
                 "--run", str(run), "--quiet", "--threads", "1", "--workers", "2"]) == 0

    def searched(path: Path) -> list[tuple[int, str, float]]:
        board = json.loads((path / "leaderboard.json").read_text())
        return sorted((r["trial"], r["architecture"], r["score"]) for r in board if r["designer"] != "final")

    assert searched(run) == searched(image_run)
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    (split,) = [r for r in records if r["event"] == "parallelism"]
    assert (split["workers"], split["threads_per_trial"]) == (2, 1)
    # One at a time, the second candidate is proposed once the first's training is over (a slot is free); two at
    # a time, right after the first
    assert _second_proposal_gap(run) < 0.5 * _second_proposal_gap(image_run)


def _second_proposal_gap(run: Path) -> float:
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    proposed = {r["trial"]: r["time"] for r in records if r["event"] == "trial_proposed"}
    return float(proposed[1] - proposed[0])


@pytest.mark.parametrize(("channels", "flip", "expected"), [(3, None, True), (1, None, False), (3, False, False),
                                                            (1, True, True)])
def test_colour_images_are_mirrored_in_training_grey_ones_not(channels: int, flip: bool | None,
                                                               expected: bool) -> None:
    from daedalus.data.images import ImageTable
    from daedalus.orchestration.image_build import ImageBuildOptions, ImageTask

    rng = np.random.default_rng(0)
    table = ImageTable(rng.random((40, channels, 8, 8), dtype=np.float32), np.arange(40) % 2, (0, 1),
                       tuple(f"p{i}" for i in range(channels * 64)), 1.0, (0.0,) * channels, (1.0,) * channels)
    task = ImageTask(table, ImageBuildOptions(target="y", image_shape=f"8x8x{channels}", flip=flip))
    assert task.flip is expected
    assert task.trainer(lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * 64, 2)),
                        1).flip is expected
