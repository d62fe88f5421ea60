"""NAS on real images against a hand-designed network trained with the same budget (issue 3, part 5).

    .venv/bin/python bench/nas_image_bench.py --dataset mnist --seeds 0 1 2 --time 600
    .venv/bin/python bench/nas_image_bench.py --dataset cifar10 --seeds 0 1 2 --time 600

Protocol: the dataset (``../shared/datasets``) is split once, 80/20, stratified, with seed 0 (the same split
for every run). Each method gets the training 80% and ``--time`` seconds of 2 threads:
- ``nas``: ``daedalus build --image-shape ...`` (search, then the winner trained from scratch), seed = the run seed;
- ``baseline``: LeNet-5 (MNIST) or a small ResNet (CIFAR-10) trained by the same trainer, on the same internal
  train/validation split, on a schedule sized to end with the same budget.
Both are scored by accuracy on the held-out 20%. Methods run one after the other, never side by side (they
would share the 2 cores). Results go to ``bench/results/nas_image_<dataset>.json`` and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daedalus.data.images import parse_image_shape, pixels_to_images, read_images  # noqa: E402
from daedalus.ensembles.predictor import Predictor  # noqa: E402
from daedalus.orchestration.image_build import ImageBuildOptions, ImageTask, build_images  # noqa: E402
from daedalus.spaces.nas.baselines import baseline  # noqa: E402

DATASETS = {"mnist": ("mnist_test_10k.csv.gz", "28x28x1", "lenet5"),
            "cifar10": ("cifar10_test.csv.gz", "32x32x3", "small_resnet")}
TARGET = "class"


def split(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(path)
    train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run_nas(train: pd.DataFrame, test: pd.DataFrame, shape: str, seed: int, seconds: float,
            workdir: Path, threads: int) -> dict[str, object]:
    started = time.monotonic()
    options = ImageBuildOptions(target=TARGET, image_shape=shape, time_budget=seconds, seed=seed, n_threads=threads)
    result = build_images(train, options, workdir / f"nas-{seed}", started=started)
    elapsed = time.monotonic() - started
    predictor = Predictor.load(result.run_dir)
    accuracy = float((predictor.predict(test) == test[TARGET].to_numpy()).mean())
    final = result.leaderboard[0]
    return {"method": "nas", "seed": seed, "test_accuracy": accuracy, "seconds": round(elapsed, 1),
            "architecture": final.get("architecture"), "params": final.get("params"), "epochs": final.get("epochs"),
            "candidates": sum(1 for r in result.leaderboard if r["designer"] != "final")}


def run_baseline(name: str, train: pd.DataFrame, test: pd.DataFrame, shape: str, seed: int,
                 seconds: float, threads: int) -> dict[str, object]:
    import torch

    started = time.monotonic()
    options = ImageBuildOptions(target=TARGET, image_shape=shape, time_budget=seconds, seed=seed, n_threads=threads)
    table = read_images(train, TARGET, parse_image_shape(shape))
    task = ImageTask(table, options)

    def build() -> torch.nn.Module:
        return baseline(name, task.in_shape, task.n_classes)

    left = seconds - (time.monotonic() - started) - 2.0
    trainer = task.train_for(build, left)
    # The test images are normalised with the *training* statistics, as the deployed NAS model does.
    images = pixels_to_images(test, table.pixel_columns, parse_image_shape(shape), table.scale, table.mean, table.std)
    lookup = {c: i for i, c in enumerate(table.classes)}
    labels = np.array([lookup[v] for v in test[TARGET].tolist()])
    accuracy, _ = trainer.evaluate(torch.from_numpy(images), torch.from_numpy(labels))
    return {"method": f"baseline:{name}", "seed": seed, "test_accuracy": float(accuracy),
            "seconds": round(time.monotonic() - started, 1), "params": trainer.params, "epochs": trainer.epochs_done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time", type=float, default=600.0)
    parser.add_argument("--methods", nargs="+", default=["nas", "baseline"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each method (default 2)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    file, shape, base = DATASETS[args.dataset]
    train, test = split(args.shared / file)
    out = args.out or ROOT / "bench" / "results" / f"nas_image_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = json.loads(out.read_text()) if out.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for method in args.methods:
                if method == "nas":
                    row = run_nas(train, test, shape, seed, args.time, Path(tmp), args.threads)
                else:
                    row = run_baseline(base, train, test, shape, seed, args.time, args.threads)
                row.update(dataset=args.dataset, budget=args.time, threads=args.threads)
                rows.append(row)
                out.write_text(json.dumps(rows, indent=1))
                print(json.dumps(row), flush=True)
    for method in args.methods:
        accs = [float(r["test_accuracy"]) for r in rows  # type: ignore[arg-type]
                if str(r["method"]).startswith(method) and r["dataset"] == args.dataset]
        if accs:
            print(f"{args.dataset} {method}: test accuracy {np.mean(accs):.4f} ± {np.std(accs):.4f} "
                  f"over {len(accs)} runs")


if __name__ == "__main__":
    main()
