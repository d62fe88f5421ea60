"""Pretraining NAS designers on another task's results (issue 12, item 8).

The oracle for "pretraining helps" is the OTHER table: designers pretrained on a 300-row cut of the CIFAR-10 table
(``tests/data/nas/pretrain_cifar10_small.csv``, its val12 only) and searching CIFAR-100 propose, from their first
proposals on, cells with a higher CIFAR-100 val12 than the same designers cold (the tables rank cells alike:
Spearman 0.97 on val12). Safeguards: pretraining never reads test200 (garbage there changes nothing), the
pretrained state survives ``get_state``/``set_state``, and a bad ``--pretrain-table`` is one line, exit 2.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daedalus.designers.base import OK, Result
from daedalus.designers.nas import make_designer
from daedalus.designers.nas.base import ArchDesigner
from daedalus.designers.nas.pretrain import Pretrainable, pretrain_from_records, rank_quantiles, task_similarity
from daedalus.evaluation.nas_table import BenchTable, load_table
from daedalus.interfaces.cli import main
from daedalus.orchestration.nas_bench import load_examples
from daedalus.spaces.nas.nb201 import NB201Space

DATA = Path(__file__).parent / "data" / "nas"
SMALL = DATA / "pretrain_cifar10_small.csv"  # 300 rows of the CIFAR-10 table (see SOURCE.md)
CIFAR10 = DATA / "nb201_cifar10.csv.gz"
CIFAR100 = DATA / "nb201_cifar100.csv.gz"
PRETRAINABLE = ("generative", "predictor")


@functools.cache
def cifar100() -> BenchTable:
    return load_table(CIFAR100)


def search(designer: ArchDesigner, table: BenchTable, steps: int) -> list[tuple[int, ...]]:
    """Ask and tell ``steps`` times, the scores from ``table``'s val12; the genotypes proposed."""
    out = []
    for _ in range(steps):
        proposal = designer.ask()
        assert proposal is not None
        out.append(proposal.candidate)
        designer.tell(proposal, Result(OK, table.val12[proposal.candidate]))
    return out


def designer(name: str, seed: int, *sources: Path) -> ArchDesigner:
    made = make_designer(name, NB201Space(), seed=seed)
    for source in sources:
        assert isinstance(made, Pretrainable)
        made.pretrain(load_examples(source))
    return made


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_pretraining_moves_the_first_proposals_to_the_other_tables_good_cells(name: str) -> None:
    table, first = cifar100(), 10
    cold, warm = [], []
    for seed in range(3):
        cold += [table.val12[g] for g in search(designer(name, seed), table, first)]
        warm += [table.val12[g] for g in search(designer(name, seed, SMALL), table, first)]
    # Cold, the first proposals are near-uniform (CIFAR-100 val12 mean ~ 50); pretrained, they are the small
    # table's good cells and their like (its top 100 average ~ 59 on CIFAR-100).
    assert np.mean(warm) > np.mean(cold) + 3.0, (np.mean(warm), np.mean(cold))


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_pretraining_reads_no_test200(name: str, tmp_path: Path) -> None:
    garbage = pd.read_csv(SMALL)
    garbage["test200"] = ["not a number"] * (len(garbage) - 1) + [float("nan")]
    garbage.to_csv(tmp_path / "garbage.csv", index=False)
    without = pd.read_csv(SMALL).drop(columns=["test200"])
    without.to_csv(tmp_path / "without.csv", index=False)
    reference = search(designer(name, 0, SMALL), cifar100(), 8)
    assert search(designer(name, 0, tmp_path / "garbage.csv"), cifar100(), 8) == reference
    assert search(designer(name, 0, tmp_path / "without.csv"), cifar100(), 8) == reference


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_scores_count_by_rank_within_their_source(name: str) -> None:
    """A source at another accuracy scale (x 0.5 - 7, as CIFAR-100 vs CIFAR-10) pretrains the same way."""
    examples = load_examples(SMALL)
    scaled = [(g, 0.5 * v - 7.0) for g, v in examples]
    a, b = make_designer(name, NB201Space(), seed=1), make_designer(name, NB201Space(), seed=1)
    assert isinstance(a, Pretrainable) and isinstance(b, Pretrainable)
    a.pretrain(examples)
    b.pretrain(scaled)
    assert search(a, cifar100(), 6) == search(b, cifar100(), 6)


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_the_pretrained_state_round_trips(name: str) -> None:
    original = designer(name, 2, SMALL)
    search(original, cifar100(), 3)
    state = json.loads(json.dumps(original.get_state()))  # JSON-serialisable
    resumed = make_designer(name, NB201Space(), seed=2)  # never pretrained itself: the state carries it
    resumed.set_state(state)
    assert search(resumed, cifar100(), 6) == search(original, cifar100(), 6)


def test_a_genotype_outside_the_space_is_refused() -> None:
    made = make_designer("generative", NB201Space(), seed=0)
    assert isinstance(made, Pretrainable)
    with pytest.raises(ValueError):
        made.pretrain([((0, 1, 2, 3, 4, 9), 50.0)])
    with pytest.raises(ValueError):
        made.pretrain([((0, 1, 2), 50.0)])


def test_rank_quantiles_are_scale_free_and_failures_rank_last() -> None:
    assert rank_quantiles([94.0, 90.0, 92.0]).tolist() == [1.0, 0.0, 0.5]
    assert rank_quantiles([73.0, 61.0, 70.0]).tolist() == [1.0, 0.0, 0.5]
    assert rank_quantiles([1.0, math.nan, -math.inf, 2.0]).tolist() == [2 / 3, 1 / 6, 1 / 6, 1.0]
    assert rank_quantiles([5.0]).tolist() == [1.0]


def test_a_dissimilar_source_counts_less() -> None:
    cifar10_task, cifar100_task = {"classes": 10, "channels": 3}, {"classes": 100, "channels": 3}
    assert task_similarity(cifar10_task, cifar10_task) == 1.0
    assert task_similarity(None, cifar100_task) == task_similarity(cifar10_task, None) == 1.0
    assert task_similarity({"name": "x"}, {"name": "y"}) == 1.0  # nothing numeric to compare
    assert 0.0 < task_similarity({"classes": 1000, "channels": 1}, cifar100_task) \
        < task_similarity(cifar10_task, cifar100_task) < 1.0
    # The designer is told its task: a source far from it weighs less in its prior.
    near = make_designer("generative", NB201Space(), seed=0, task=cifar100_task)
    far = make_designer("generative", NB201Space(), seed=0, task={"classes": 100_000, "channels": 1})
    examples = load_examples(SMALL)
    for made in (near, far):
        assert isinstance(made, Pretrainable)
        made.pretrain(examples, cifar10_task)
    assert sum(w for _, w in far.prior) < sum(w for _, w in near.prior)  # type: ignore[attr-defined]


# ----- the command ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_pretrains_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["nas-bench", "--table", str(CIFAR100), "--designer", "generative", "--queries", "20", "--seeds", "2",
            "--json"]
    assert main([*args, "--pretrain-table", str(SMALL)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pretrain_tables"] == [str(SMALL)]
    assert main(args) == 0
    cold = json.loads(capsys.readouterr().out)
    assert "pretrain_tables" not in cold  # a cold report keeps its documented shape
    assert report["results"]["20"]["mean"] > cold["results"]["20"]["mean"]


def _write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("case", ["missing", "corrupt", "no-val12", "val12-text", "val12-empty", "cell", "empty",
                                  "same-table", "not-pretrainable"])
def test_cli_bad_pretrain_table_is_one_line_and_exit_2(case: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cell = NB201Space().to_string((3, 3, 3, 0, 1, 3))
    pretrain = {
        "missing": str(tmp_path / "nope.csv"),
        "corrupt": _write(tmp_path / "corrupt.csv.gz", b"\x1f\x8b\x08\x00garbage, not gzip"),
        "no-val12": _write(tmp_path / "cols.csv", f"cell,test200\n{cell},94\n"),
        "val12-text": _write(tmp_path / "text.csv", f"cell,val12\n{cell},high\n"),
        "val12-empty": _write(tmp_path / "empty12.csv", f"cell,val12\n{cell},\n"),
        "cell": _write(tmp_path / "cell.csv", "cell,val12\n|conv9~0|,1\n"),
        "empty": _write(tmp_path / "empty.csv", "cell,val12\n"),
        "same-table": str(CIFAR100),
        "not-pretrainable": str(SMALL),
    }[case]
    designer_name = "random" if case == "not-pretrainable" else "generative"
    argv = ["nas-bench", "--table", str(CIFAR100), "--designer", designer_name, "--queries", "5", "--seeds", "1",
            "--pretrain-table", str(SMALL), "--pretrain-table", pretrain]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("daedalus: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "pretrain" in err


def test_cli_bad_pretrain_table_in_a_real_subprocess(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("nas-bench", "--table", CIFAR10, "--designer", "generative", "--queries", 5, "--seeds", 1,
                 "--pretrain-table", _write(tmp_path / "cols.csv", "cell,score\n|none~0|,1\n"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "val12" in result.stderr


def test_the_small_fixture_is_a_cut_of_the_bundled_table() -> None:
    small, full = pd.read_csv(SMALL), pd.read_csv(CIFAR10)
    merged = small.merge(full, on="cell", suffixes=("", "_full"))
    assert len(merged) == len(small) == 300
    assert (merged["val12"] == merged["val12_full"]).all()
    assert set(itertools.islice(full.nlargest(100, "val12")["cell"], 100)) <= set(small["cell"])


def test_records_of_any_source_pretrain_per_source() -> None:
    """Past image runs' trials (the knowledge base's records) pretrain as tables do: one source per run, each
    normalised on its own, so a run at 30% accuracy and one at 90% both count by rank."""
    table = load_examples(SMALL)
    records = [("run-a", {"classes": 10}, g, v) for g, v in table[:150]]
    records += [("run-b", {"classes": 10}, g, v / 3 - 5) for g, v in table[150:]]
    by_records = make_designer("generative", NB201Space(), seed=3, task={"classes": 10})
    by_sources = make_designer("generative", NB201Space(), seed=3, task={"classes": 10})
    assert isinstance(by_records, Pretrainable) and isinstance(by_sources, Pretrainable)
    assert pretrain_from_records(by_records, records) == 2
    by_sources.pretrain(table[:150], {"classes": 10})
    by_sources.pretrain([(g, v / 3 - 5) for g, v in table[150:]], {"classes": 10})
    assert search(by_records, cifar100(), 5) == search(by_sources, cifar100(), 5)


def test_a_pretrained_policy_keeps_proposing_new_cells() -> None:
    """No collapse: however concentrated the pretrained policy, each ask is a cell not read yet (unseen samples
    first, then unseen neighbours of its samples), so the budget is never spent on repeats."""
    proposed = search(designer("generative", 4, SMALL), cifar100(), 100)
    assert len(set(proposed)) == len(proposed)


@pytest.mark.parametrize("name", PRETRAINABLE)
def test_pretraining_after_the_search_began_is_refused(name: str) -> None:
    """Refitting mid-search would silently throw away what the designer learned from the task's own results."""
    made = designer(name, 0)
    search(made, cifar100(), 1)
    assert isinstance(made, Pretrainable)
    with pytest.raises(ValueError, match="before its first ask"):
        made.pretrain(load_examples(SMALL))


def test_a_state_saved_before_pretraining_existed_still_resumes() -> None:
    for name in PRETRAINABLE:
        original = designer(name, 5)
        search(original, cifar100(), 3)
        state = original.get_state()
        for key in ("prior", "prior_weight", "proposed"):
            state["learned"].pop(key, None)
        resumed = make_designer(name, NB201Space(), seed=5)
        resumed.set_state(state)
        assert search(resumed, cifar100(), 3) == search(original, cifar100(), 3)


def test_a_small_source_keeps_its_best_few_not_only_its_best() -> None:
    """A past image run records a dozen networks: the policy is fitted to its best few, weighted by rank."""
    made = make_designer("generative", NB201Space(), seed=0)
    assert isinstance(made, Pretrainable)
    made.pretrain(load_examples(SMALL)[:12])
    weights = sorted((w for _, w in made.prior), reverse=True)  # type: ignore[attr-defined]
    assert len(weights) >= 3 and weights[0] == 1.0 and weights[2] > 0.1
