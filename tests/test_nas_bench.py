"""``daedalus nas-bench`` and the NAS-Bench-201 protocol of ``run_once``, on the bundled tables (tests/data/nas)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.designers.nas.base import ArchDesigner
from daedalus.evaluation.nas_table import BenchTable, load_table
from daedalus.interfaces.cli import main
from daedalus.orchestration import nas_bench
from daedalus.orchestration.nas_bench import run_bench, run_once
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.nb201 import NB201Space

DATA = Path(__file__).resolve().parent / "data" / "nas"
CIFAR10 = DATA / "nb201_cifar10.csv.gz"
CIFAR100 = DATA / "nb201_cifar100.csv.gz"


@pytest.fixture(scope="module")
def cifar10() -> BenchTable:
    return load_table(CIFAR10)


# ----- the bundled tables against the README of the ground truth ----------------------------------------
def test_bundled_tables_match_the_published_optima_and_ceilings() -> None:
    for path, optimum, ceiling in ((CIFAR10, 94.37, 94.37), (CIFAR100, 73.51, 72.28)):
        table = load_table(path)
        assert len(table.val12) == 5 ** 6
        assert table.optimum == pytest.approx(optimum, abs=0.005)
        assert table.ceiling == pytest.approx(ceiling, abs=0.005)


def test_random_search_matches_the_reference_at_100_queries(cifar10: BenchTable) -> None:
    # The README's reference: 93.68 ± 0.38 (300 seeds). Over 30 seeds the mean's standard error is about 0.07.
    results = run_bench(cifar10, "random", queries=100, seeds=30, checkpoints=(100,))
    assert 93.40 <= results["100"]["mean"] <= 93.95
    assert 0.2 <= results["100"]["sd"] <= 0.6


# ----- run_once's protocol, with a scripted designer ------------------------------------------------------
class Scripted(ArchDesigner):
    """Proposes a fixed list of genotypes (then repeats the last), and records what it was told."""

    name = "scripted"
    script: list[Genotype] = []

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.proposals: Iterator[Genotype] = itertools.chain(self.script, itertools.repeat(self.script[-1]))
        self.told: list[tuple[Genotype, float | None]] = []

    def propose(self) -> Genotype:
        return next(self.proposals)

    def learn(self, genotype: Genotype, score: float | None) -> None:
        self.told.append((genotype, score))


A, B, C = (0,) * 6, (1,) * 6, (2,) * 6


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[Scripted]:
    made: list[Scripted] = []

    def make(name, space, seed=0, **options):  # type: ignore[no-untyped-def]
        made.append(Scripted(space, seed=seed))
        return made[-1]

    monkeypatch.setattr(nas_bench, "make_designer", make)
    return made


def table(val12: dict[Genotype, float], test200: dict[Genotype, float]) -> BenchTable:
    return BenchTable("scripted", val12, test200, {g: 1.0 for g in val12})


def test_budget_counts_distinct_reads_and_a_repeat_is_free(scripted: list[Scripted]) -> None:
    Scripted.script = [A, A, B, A, B, C]
    scores = run_once(table({A: 50.0, B: 60.0, C: 55.0}, {A: 1.0, B: 2.0, C: 3.0}), "x", queries=3, seed=0,
                      checkpoints=(1, 2, 3))
    assert scores == {1: 1.0, 2: 2.0, 3: 2.0}  # C is read third but its val12 is below B's
    assert scripted[0].told == [(A, 50.0), (A, 50.0), (B, 60.0), (A, 50.0), (B, 60.0), (C, 55.0)]


def test_a_tie_on_val12_goes_to_the_cell_read_first(scripted: list[Scripted]) -> None:
    same = table({A: 70.0, B: 70.0}, {A: 1.0, B: 2.0})
    Scripted.script = [A, B]
    assert run_once(same, "x", queries=2, seed=0, checkpoints=(2,)) == {2: 1.0}
    Scripted.script = [B, A]
    assert run_once(same, "x", queries=2, seed=0, checkpoints=(2,)) == {2: 2.0}


def test_a_stalled_designer_is_stopped_and_keeps_its_last_score(scripted: list[Scripted]) -> None:
    Scripted.script = [A, B]  # then B for ever
    scores = run_once(table({A: 50.0, B: 60.0}, {A: 1.0, B: 2.0}), "x", queries=5, seed=0, checkpoints=(1, 5))
    assert scores == {1: 1.0, 5: 2.0}
    assert len(scripted[0].told) == nas_bench.MAX_ASKS_PER_QUERY * 5


# ----- the command ----------------------------------------------------------------------------------------
def test_cli_prints_the_table_in_a_real_subprocess(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nas-bench", "--table", CIFAR10, "--designer", "local", "--queries", 60, "--seeds", 3)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["budget", "mean", "sd", "regret"]
    assert [line.split()[0] for line in lines[2:-1]] == ["20", "50", "60"]  # the budgets up to N, and N
    assert lines[-1].startswith("optimum 94.37")


def test_cli_json_has_exactly_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nas-bench", "--table", str(CIFAR10), "--designer", "evolution", "--queries", "50",
                 "--seeds", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["designer", "table", "seeds", "results"]
    assert (report["designer"], report["table"], report["seeds"]) == ("evolution", str(CIFAR10), 2)
    assert list(report["results"]) == ["20", "50"]
    for row in report["results"].values():
        assert list(row) == ["mean", "sd", "regret"]
        assert row["regret"] == pytest.approx(94.3733 - row["mean"], abs=1e-3)


def test_cli_runs_seeds_in_processes_with_the_same_results(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["nas-bench", "--table", str(CIFAR10), "--designer", "random", "--queries", "20", "--seeds", "4", "--json"]
    main(args)
    alone = json.loads(capsys.readouterr().out)
    main([*args, "--processes", "2"])
    assert json.loads(capsys.readouterr().out) == alone


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["designer", "queries", "seeds", "processes", "missing", "not-csv", "columns",
                                  "incomplete", "cell"])
def test_cli_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"--table": str(CIFAR10), "--designer": "random", "--queries": "20", "--seeds": "1"}
    space = NB201Space()
    few_rows = "cell,val12,test200\n" + "".join(f"{space.to_string((i,) * 6)},50,60\n" for i in range(5))
    bad = {
        "designer": {"--designer": "annealing"},
        "queries": {"--queries": "0"},
        "seeds": {"--seeds": "-1"},
        "processes": {"--processes": "0"},
        "missing": {"--table": str(tmp_path / "nope.csv.gz")},
        "not-csv": {"--table": _write(tmp_path / "bad.csv", '"unclosed\n1,2\n')},
        "columns": {"--table": _write(tmp_path / "cols.csv", "cell,val12\n|none~0|,1\n")},
        "incomplete": {"--table": _write(tmp_path / "few.csv", few_rows)},
        "cell": {"--table": _write(tmp_path / "cell.csv", "cell,val12,test200\n|conv9~0|,1,2\n")},
    }[case]
    argv = ["nas-bench", *itertools.chain.from_iterable({**good, **bad}.items())]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("daedalus: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_argument_errors_exit_2_without_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("nas-bench", "--table", CIFAR10, "--queries", "many")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
