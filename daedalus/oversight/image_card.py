"""The sections of a model card that differ for an image run (a network found by architecture search).

``model_card.model_card`` assembles the card; for an image run it takes these sections instead of the tabular
ones. Everything comes from the run's files: ``run.json`` (options, classes), ``model/model.json`` (the
network), ``leaderboard.json`` (every searched network), ``pareto.json``, the audit log and
``holdout_predictions.npz`` (the final network's probabilities on the held-out images, which give the
per-class results and the bootstrap interval of the accuracy).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from daedalus.data.schema import Task
from daedalus.evaluation.metrics import get_metric
from daedalus.oversight.final_predictions import FinalPredictions, final_predictions
from daedalus.oversight.run_record import RunRecord
from daedalus.oversight.why import Candidate, compare

NO_GROUPS = ("not measured: an image run has no columns to declare as sensitive; the classes are the only "
             "groups evaluated")
TOP_CONFUSIONS = 5
TOP_SEARCHED = 6


def _event(record: RunRecord, name: str) -> dict[str, Any]:
    return next((r for r in reversed(record.audit) if r.get("event") == name), {})


def _searched(record: RunRecord) -> list[dict[str, Any]]:
    return [r for r in record.leaderboard if r.get("designer") != "final" and r.get("status") == "ok"]


def image_sections(record: RunRecord, spec: dict[str, Any] | None) -> dict[str, Any]:
    """``model_details``, ``factors``, ``metrics``, ``evaluation_data``, ``training_data``,
    ``quantitative_analyses`` and ``ethical_considerations`` of an image run's card."""
    fp = final_predictions(record.root)
    return {"model_details": _model_details(record, spec), "factors": _factors(record),
            "metrics": _metrics(record), "evaluation_data": _evaluation_data(record, fp),
            "training_data": _training_data(record), "quantitative_analyses": _quantitative(record, fp),
            "ethical_considerations": _ethics(record)}


def _model_details(record: RunRecord, spec: dict[str, Any] | None) -> dict[str, Any]:
    info, options = record.info, record.info.get("options", {})
    final = next((r for r in record.leaderboard if r.get("designer") == "final"), None)
    trial = (spec or {}).get("trial")
    searched = _searched(record)
    designers = sorted({str(r.get("designer")) for r in searched})
    return {
        "name": f"{record.root.name}: image classifier of '{options.get('target')}'",
        "developed_by": "Daedalus architecture search (networks proposed by a designer, trained by successive "
                        "halving, the winner trained again from scratch; no hand tuning)",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("created", 0)))),
        "run_directory": str(record.root), "status": info.get("status"), "task": "image classification",
        "target": options.get("target"), "classes": info.get("classes"),
        "model_type": (f"convolutional network of the '{info.get('space', 'cnn')}' search space: "
                       f"{spec['architecture']}" if spec else "no model (no network finished training)"),
        "parameters": (final or {}).get("params") or next((r.get("params") for r in record.leaderboard
                                                           if r.get("trial") == trial), None),
        "mflops_per_image": next((r.get("mflops") for r in record.leaderboard if r.get("mflops") is not None
                                  and r.get("architecture") == (spec or {}).get("architecture")), None),
        "epochs_trained": (spec or {}).get("epochs"),
        "found_by": (final or {}).get("reason") or "the best network of the search (no final training)",
        "networks_searched": len(searched), "designers": designers, "designer_option": options.get("designer"),
        "seed": options.get("seed"), "time_budget_seconds": options.get("time_budget"),
        "elapsed_seconds": info.get("elapsed_seconds"),
        "how_to_use": (f"daedalus predict {record.root} IMAGES.csv (pixel columns; refused until approved); "
                       f"daedalus export-arch {record.root} --out model.py for a standalone PyTorch file"),
    }


def _factors(record: RunRecord) -> dict[str, Any]:
    return {"groups_evaluated": NO_GROUPS, "classes": record.info.get("classes"),
            "note": "Results are broken down by class. Factors that images hide (who or what is pictured, the "
                    "camera, lighting, background) were not recorded, so performance across them is unknown."}


def _metrics(record: RunRecord) -> dict[str, Any]:
    return {"model_selection_metric": "accuracy", "why_this_metric": "the share of images classified correctly: "
            "architecture search compares networks by it", "validation": record.info.get("validation"),
            "uncertainty": "95% bootstrap interval over the held-out images, stratified by class",
            "decision_rule": "the class with the highest predicted probability",
            "fairness_metrics": NO_GROUPS}


def _evaluation_data(record: RunRecord, fp: FinalPredictions | None) -> dict[str, Any]:
    return {"data": f"{len(fp.y) if fp else 'the'} held-out images ({record.info.get('validation')}) that no "
                    "network trained on; they scored every searched network and chose the architecture",
            "note": "No separate test set was used by the build, and the held-out images chose the winner, so "
                    "its score on them is slightly optimistic; evaluate on fresh images from the intended "
                    "population before use."}


def _training_data(record: RunRecord) -> dict[str, Any]:
    options, data = record.info.get("options", {}), _event(record, "image_data")
    return {"source": record.info.get("data_source"), "images": data.get("rows"),
            "image_shape_chw": data.get("shape"), "classes": data.get("classes"),
            "pixel_scale": data.get("scale"),
            "augmentation": {"shift_pixels": data.get("shift", options.get("shift")),
                             "mirror_left_right": data.get("flip", options.get("flip"))}}


def _quantitative(record: RunRecord, fp: FinalPredictions | None) -> dict[str, Any]:
    searched = sorted(_searched(record), key=lambda r: (-(r.get("epochs") or 0), -(r.get("score") or 0.0)))
    out: dict[str, Any] = {
        "searched_networks": [{"trial": r.get("trial"), "score": r.get("score"), "epochs": r.get("epochs"),
                               "params": r.get("params"), "designer": r.get("designer"),
                               "architecture": r.get("architecture")} for r in searched[:TOP_SEARCHED]],
        "pareto_front": (record.pareto or {}).get("front") or "the search had one objective (accuracy)",
    }
    if fp is None:
        out["held_out"] = "not available: no predictions of the final network on the held-out images are stored"
        return out
    accuracy = compare(Candidate("final network", fp.members[0][0], "cnn", fp.pred), [], fp.y,
                       get_metric("accuracy", Task.MULTICLASS), classification=True)["chosen"]
    out["held_out_accuracy"] = {"accuracy": accuracy["score"], "ci95": accuracy["ci"], "images": len(fp.y)}
    out["per_class"] = per_class(fp)
    out["most_confused"] = most_confused(fp)
    return out


def per_class(fp: FinalPredictions) -> list[dict[str, Any]]:
    """Precision, recall (the class's accuracy), F1 and support of each class on the held-out images."""
    codes = np.arange(fp.pred.shape[1])
    predicted = fp.pred.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(fp.y, predicted, labels=codes,
                                                                     zero_division=0)
    labels = fp.classes or tuple(codes)
    return [{"class": str(labels[k]), "precision": float(precision[k]), "recall": float(recall[k]),
             "f1": float(f1[k]), "images": int(support[k])} for k in codes]


def most_confused(fp: FinalPredictions) -> list[dict[str, Any]]:
    """The most frequent mistakes (true class taken for another), most frequent first."""
    codes = np.arange(fp.pred.shape[1])
    matrix = confusion_matrix(fp.y, fp.pred.argmax(axis=1), labels=codes)
    np.fill_diagonal(matrix, 0)
    labels = fp.classes or tuple(codes)
    order = np.argsort(matrix, axis=None)[::-1][:TOP_CONFUSIONS]
    pairs = [np.unravel_index(i, matrix.shape) for i in order]
    return [{"true": str(labels[t]), "predicted": str(labels[p]), "images": int(matrix[t, p])}
            for t, p in pairs if matrix[t, p] > 0]


def _ethics(record: RunRecord) -> list[str]:
    return ["No sensitive attribute could be audited: an image run has no columns to declare with --sensitive. "
            "If the images show people, measure performance across the groups they belong to before use.",
            "The classes are the only breakdown measured (see quantitative analyses): classes the network "
            "confuses are where its decisions need most review."]
