"""The ArchSpace contract, for every architecture space, and the export round trip (to_source -> Net -> weights)."""

from __future__ import annotations

import ast
import importlib.util
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from daedalus.evaluation.nas_train import torch_threads
from daedalus.spaces.nas.base import ArchSpace, Genotype
from daedalus.spaces.nas.baselines import BASELINES, baseline, baseline_source, small_resnet
from daedalus.spaces.nas.cnn import CNNSpace
from daedalus.spaces.nas.nb201 import NB201Space


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the test machines are small and shared, where more threads only contend."""
    with torch_threads(1):
        yield


HAS_MLP = importlib.util.find_spec("daedalus.spaces.nas.mlp") is not None


@dataclass
class Case:
    """A space, the shape arguments of its networks, and a tiny input batch for them."""

    space: ArchSpace
    shape: dict[str, Any]
    batch: Callable[[int], torch.Tensor]
    n_outputs: int


def _image_batch(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(n))


def _tabular_batch(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    codes = torch.randint(-1, 3, (n, 1), generator=g).float()  # a categorical column, -1 = missing
    return torch.cat([torch.randn(n, 4, generator=g), codes], dim=1)


def _nb201() -> Case:
    return Case(NB201Space(), {"in_shape": (3, 8, 8), "n_outputs": 3, "channels": 4}, _image_batch, 3)


def _cnn() -> Case:
    return Case(CNNSpace(), {"in_shape": (3, 8, 8), "n_outputs": 3}, _image_batch, 3)


def _mlp() -> Case:
    from daedalus.spaces.nas.mlp import MLPSpace

    return Case(MLPSpace(), {"n_numeric": 4, "cardinalities": (3,), "n_outputs": 3}, _tabular_batch, 3)


CASES = [pytest.param(_nb201, id="nb201"), pytest.param(_cnn, id="cnn"),
         pytest.param(_mlp, id="mlp", marks=pytest.mark.skipif(not HAS_MLP, reason="MLPSpace not written yet"))]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param()


def _samples(space: ArchSpace, n: int = 25, seed: int = 0) -> list[Genotype]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def _one_step(space: ArchSpace, genotype: Genotype) -> set[Genotype]:
    """Every genotype reachable by changing one used position (then canonicalising), other than the genotype."""
    out = set()
    for i, used in enumerate(space.active(genotype)):
        if used:
            for v in range(space.choices[i].size):
                out.add(space.canonical(genotype[:i] + (v,) + genotype[i + 1:]))
    return out - {genotype}


# ----- the genotype contract -----
def test_sample_is_canonical_and_valid(case: Case) -> None:
    for g in _samples(case.space):
        assert len(g) == len(case.space.choices)
        assert case.space.validate(g) == g
        assert case.space.canonical(g) == g
        assert all(isinstance(v, int) for v in g)


def test_neighbours_are_distinct_canonical_one_step_and_exclude_self(case: Case) -> None:
    space = case.space
    for g in _samples(space, 10):
        neighbours = space.neighbours(g)
        assert neighbours, g
        assert len(set(neighbours)) == len(neighbours)
        assert g not in neighbours
        assert all(space.canonical(n) == n for n in neighbours)
        assert set(neighbours) == _one_step(space, g)


def test_mutate_returns_a_neighbour(case: Case) -> None:
    rng = np.random.default_rng(1)
    for g in _samples(case.space, 10):
        assert case.space.mutate(g, rng) in case.space.neighbours(g)


def test_crossover_takes_each_used_position_from_a_parent(case: Case) -> None:
    space, rng = case.space, np.random.default_rng(2)
    samples = _samples(space, 20)
    for a, b in zip(samples[::2], samples[1::2], strict=True):
        child = space.crossover(a, b, rng)
        assert space.canonical(child) == child
        for value, parent_a, parent_b, used in zip(child, a, b, space.active(child), strict=True):
            assert value in ((parent_a, parent_b) if used else (0,))


def test_encode_has_a_fixed_length_and_one_hot_per_used_position(case: Case) -> None:
    space = case.space
    length = sum(c.size for c in space.choices)
    for g in _samples(space, 10):
        code = space.encode(g)
        assert code.shape == (length,)
        assert code.sum() == sum(space.active(g))


def test_operations_are_deterministic_for_a_seed(case: Case) -> None:
    def run(seed: int) -> list[Genotype]:
        rng = np.random.default_rng(seed)
        a, b = case.space.sample(rng), case.space.sample(rng)
        return [a, b, case.space.mutate(a, rng), case.space.crossover(a, b, rng)]

    assert run(5) == run(5)


# ----- networks and their export -----
def test_instantiate_gives_a_working_module(case: Case) -> None:
    for g in _samples(case.space, 3, seed=3):
        module = case.space.instantiate(g, **case.shape)
        assert isinstance(module, torch.nn.Module)
        assert module(case.batch(4)).shape == (4, case.n_outputs)


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _round_trip(module: torch.nn.Module, source: str, batch: torch.Tensor, path: Path) -> None:
    """Write the export, import it, load the module's weights into Net() and compare outputs in eval mode."""
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert imported <= {"torch", "__future__"}, imported
    # Trained-looking state: parameters moved off their initial values, BN running statistics updated.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module.train()
    module(batch)
    path.write_text(source)
    net = _import_file(path).Net()
    weights = path.with_suffix(".pt")
    torch.save(module.state_dict(), weights)
    net.load_state_dict(torch.load(weights))  # strict: the same keys and shapes
    module.eval()
    net.eval()
    with torch.no_grad():
        assert torch.allclose(module(batch), net(batch), atol=1e-6)


def test_export_round_trip_reproduces_the_outputs(case: Case, tmp_path: Path) -> None:
    for k, g in enumerate(_samples(case.space, 3, seed=4)):
        torch.manual_seed(k)
        module = case.space.instantiate(g, **case.shape)
        _round_trip(module, case.space.to_source(g, **case.shape), case.batch(6), tmp_path / f"net_{k}.py")


# ----- space-specific -----
def test_portfolio_members_are_distinct_valid_networks(case: Case) -> None:
    portfolio = case.space.portfolio()
    assert len(set(portfolio)) == len(portfolio)
    for genotype in portfolio:
        assert case.space.canonical(genotype) == case.space.validate(genotype)
        output = case.space.instantiate(genotype, **case.shape)(case.batch(2))
        assert output.shape[0] == 2


def test_cnn_portfolio_holds_the_classic_designs() -> None:
    space = CNNSpace()
    resnet8 = space.from_config({"n_stages": 3, "downsample": "stride", "skip": True, "norm": "batch",
                                 "channels_1": 16, "channels_2": 32, "channels_3": 64})
    assert resnet8 in space.portfolio()
    assert any(space.describe(g)["head"] == "fc" and space.describe(g)["norm"] == "none" for g in space.portfolio())


def test_cnn_unused_positions_are_zeroed() -> None:
    space = CNNSpace()
    one_stage = (0, 1, 1, 0, 2, 3, 1, 1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 1)
    assert space.canonical(one_stage) == (0, 0, 1, 0, 2, 3, 1) + (0,) * 9 + (1, 1)
    assert space.active(one_stage)[1] is False  # downsample: nothing is downsampled with one stage
    assert space.describe(one_stage) == {"n_stages": 1, "skip": True, "norm": "batch", "blocks_1": 3,
                                         "channels_1": 64, "kernel_1": 5, "stem": "conv_pool",
                                         "head": "fc"}


def test_cnn_space_contains_resnet8() -> None:
    space = CNNSpace()
    resnet8 = space.canonical((2, 0, 1, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0))  # 3 stages of 1 block, 16/32/64
    found = space.instantiate(resnet8, in_shape=(3, 32, 32), n_outputs=10)
    reference = small_resnet((3, 32, 32), 10, depth=8)
    assert {k: v.shape for k, v in found.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()}


def test_cnn_handles_odd_and_tiny_images() -> None:
    space = CNNSpace()
    four_stages = [(3, 1, 1, 0) + (0, 0, 0) * 4 + (stem, head) for stem in (0, 1) for head in (0, 1)]
    for genotype, shape in itertools.product(four_stages, [(1, 7, 5), (2, 1, 9), (1, 1, 1)]):
        module = space.instantiate(genotype, in_shape=shape, n_outputs=2)
        assert module(torch.randn(3, *shape)).shape == (3, 2)


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_run_and_export(name: str, tmp_path: Path) -> None:
    for shape in [(1, 28, 28), (3, 8, 8)]:
        module = baseline(name, shape, 10)
        batch = torch.randn(2, *shape)
        assert module(batch).shape == (2, 10)
        _round_trip(module, baseline_source(name, shape, 10), batch, tmp_path / f"{name}_{shape[1]}.py")


def test_baselines_have_their_published_sizes() -> None:
    lenet = baseline("lenet5", (1, 28, 28), 10)
    assert lenet.state_dict()["fc1.weight"].shape == (120, 16 * 5 * 5)
    n_params = sum(p.numel() for p in small_resnet((3, 32, 32), 10, depth=20).parameters())
    assert 0.26e6 < n_params < 0.28e6  # ResNet-20: 0.27M
