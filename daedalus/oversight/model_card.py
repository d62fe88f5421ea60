"""Model cards (Mitchell et al., 2019, "Model Cards for Model Reporting"), generated from the run record.

``model_card.json`` holds the card as data, one key per section of the paper; ``model_card.md`` is the same
card for people, rendered from the JSON so the two never disagree. Both are written at the end of a build (table
or image) and by ``daedalus card RUN [--out DIR]``; an image run's sections come from ``image_card``. Nothing
is invented: every statement comes from a file of the run
(``run.json``, ``schema.json``, ``checks.json``, ``leaderboard.json``, ``model/model.json``,
``explanations.json``, ``fairness.json``, ``policy.toml``, ``audit.jsonl``), and what a run lacks is named as
missing (an intended use not stated, fairness not measured) rather than left out.

Sections (JSON keys): ``model_details``, ``intended_use``, ``factors``, ``metrics``, ``evaluation_data``,
``training_data``, ``quantitative_analyses``, ``ethical_considerations``, ``caveats_and_recommendations``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daedalus.data.schema import Schema
from daedalus.errors import RunError
from daedalus.oversight.approval import approval_state
from daedalus.oversight.image_card import image_sections
from daedalus.oversight.policy import attached_policy
from daedalus.oversight.run_record import RunRecord, load_run
from daedalus.store.atomic import write_json_atomic, write_text_atomic
from daedalus.store.layout import read_model_file, usable_model
from daedalus.store.run import RunStore

CARD_NAME = "model_card"
SECTIONS = ("model_details", "intended_use", "factors", "metrics", "evaluation_data", "training_data",
            "quantitative_analyses", "ethical_considerations", "caveats_and_recommendations")
TITLES = {"model_details": "Model details", "intended_use": "Intended use", "factors": "Factors",
          "metrics": "Metrics", "evaluation_data": "Evaluation data", "training_data": "Training data",
          "quantitative_analyses": "Quantitative analyses", "ethical_considerations": "Ethical considerations",
          "caveats_and_recommendations": "Caveats and recommendations"}
NOT_MEASURED = "not measured (no --sensitive columns)"
NOT_STATED = ("WARNING: no intended use was stated (pass --intended-use TEXT to build, or set intended_use in "
              "the --policy file). Without one, no use of this model has been shown to be appropriate.")
TOP_FEATURES = 10
DEFAULT_METRIC_REASON = "the AutoML Benchmark's default for the task"


def _spec(root: Path) -> dict[str, Any] | None:
    found = usable_model(root)  # the final model, else the best so far
    return None if found is None else read_model_file(found[1])


def _member_configs(record: RunRecord) -> dict[int, dict[str, Any]]:
    return {int(r["trial"]): r.get("config", {}) for r in record.audit
            if r.get("event") == "trial_proposed" and isinstance(r.get("trial"), int)}


def _model_details(record: RunRecord, schema: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    info, options = record.info, record.info.get("options", {})
    configs = _member_configs(record)
    members = [{"trial": m["trial"], "family": m["family"], "weight": m["weight"],
                "hyperparameters": configs.get(int(m["trial"]), {})} for m in (spec or {}).get("members", [])]
    return {
        "name": f"{record.root.name}: {info.get('task', '?')} model of '{options.get('target')}'",
        "developed_by": "Daedalus AutoML (automated search, ensembling and refit; no hand tuning)",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("created", 0)))),
        "run_directory": str(record.root), "status": info.get("status"), "task": info.get("task"),
        "target": options.get("target"), "classes": schema.get("classes"),
        "model_type": (f"weighted ensemble ({spec['kind']}) of {len(members)} member(s), chosen by greedy "
                       "ensemble selection (Caruana et al. 2004) on out-of-fold predictions" if spec else
                       "no model (no trial finished)"),
        "members": members, "families_searched": info.get("families", []),
        "trials": sum(1 for r in record.leaderboard if r.get("trial") is not None),
        "seed": options.get("seed"), "time_budget_seconds": options.get("time_budget"),
        "elapsed_seconds": info.get("elapsed_seconds"),
        "how_to_use": f"daedalus predict {record.root} DATA.csv (refused until approved; see approval)",
    }


def _intended_use(record: RunRecord) -> dict[str, Any]:
    text = record.info.get("options", {}).get("intended_use")
    source = "--intended-use" if text else None
    if not text:
        policy = attached_policy(record.root)
        if policy is not None and policy.intended_use:
            text, source = policy.intended_use, f"policy {policy.source}"
    return {"primary_use": text, "source": source, "warning": None if text else NOT_STATED,
            "out_of_scope": "Any use other than the one stated; populations or data unlike the training data; "
                            "automated decisions about people without human review."}


def _factors(schema: dict[str, Any], options: dict[str, Any], fairness: dict[str, Any] | None) -> dict[str, Any]:
    sensitive = list(schema.get("sensitive") or options.get("sensitive") or [])
    groups = sorted({f"{g.get('column')}={g.get('group')}" for g in (fairness or {}).get("by_group", [])})
    return {"sensitive_columns": sensitive,
            "sensitive_used_as_features": bool(options.get("use_sensitive")) if sensitive else None,
            "groups_evaluated": groups or NOT_MEASURED,
            "dropped_columns": schema.get("dropped", {}),
            "note": ("Results are broken down by the declared sensitive columns and their intersections."
                     if sensitive else "No sensitive column was declared, so no group was evaluated; other "
                     "columns may still act as proxies for protected attributes.")}


def _metrics(record: RunRecord, fairness: dict[str, Any] | None) -> dict[str, Any]:
    options = record.info.get("options", {})
    return {"model_selection_metric": record.info.get("metric"),
            "why_this_metric": "chosen by the user (--metric)" if options.get("metric") else DEFAULT_METRIC_REASON,
            "validation": record.info.get("validation"),
            "uncertainty": "95% paired bootstrap intervals over the validation rows (see quantitative analyses)",
            "decision_rule": ("the predicted value" if record.info.get("task") == "regression"
                              else "the class with the highest predicted probability"),
            "fairness_metrics": (fairness or {}).get("metrics") or NOT_MEASURED,
            "fairness_constraint": options.get("fairness")}


def _training_data(record: RunRecord, schema: dict[str, Any]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for col in schema.get("columns", []):
        kinds[col["kind"]] = kinds.get(col["kind"], 0) + 1
    findings = [f"[{f.get('severity')}] {f.get('message')}" for f in (record.checks or {}).get("findings", [])]
    return {"source": record.info.get("data_source"), "columns_by_kind": kinds,
            "features_used": list(Schema.from_dict(schema).feature_columns) if schema.get("columns") else [],
            "data_checks": findings,
            "rows_without_target_dropped": (record.checks or {}).get("rows_without_target_dropped")}


def _evaluation_data(record: RunRecord) -> dict[str, Any]:
    return {"data": f"out-of-fold predictions on the training data: {record.info.get('validation')}",
            "note": "No separate test set was used by the build; evaluate on fresh data from the intended "
                    "population before use."}


def _quantitative(record: RunRecord, fairness: dict[str, Any] | None) -> dict[str, Any]:
    board = [r for r in record.leaderboard if r.get("status") == "ok"][:6]
    expl = record.explanations or {}
    why = expl.get("why") or {}
    out: dict[str, Any] = {
        "validation_score": board[0]["score"] if board else None, "metric": record.info.get("metric"),
        "leaderboard": [{"rank": r.get("rank"), "trial": r.get("trial"), "family": r.get("family"),
                         "score": r.get("score")} for r in board],
        "why_this_model": why.get("statement") or why.get("skipped") or "not computed",
        "confidence_intervals": ({"chosen": why["chosen"], "runners_up": why.get("runners_up", [])}
                                 if "chosen" in why else None),
        "feature_importance": expl.get("feature_importance", [])[:TOP_FEATURES] or
        (expl.get("feature_importance_detail") or {}).get("skipped", "not computed"),
        "hyperparameter_importance": dict(list((expl.get("hyperparameter_importance") or {}).items())[:TOP_FEATURES]),
    }
    if fairness is None:
        out["fairness"] = NOT_MEASURED
    else:
        out["fairness"] = {k: fairness.get(k) for k in ("source", "rows", "positive_class", "overall", "by_group",
                                                        "intersectional", "differences", "constraint")}
    return out


def _ethics(record: RunRecord, schema: dict[str, Any], fairness: dict[str, Any] | None) -> list[str]:
    items = []
    sensitive = schema.get("sensitive") or []
    if not sensitive:
        items.append("Fairness was " + NOT_MEASURED + ": the model's effect on protected groups is unknown.")
    else:
        used = record.info.get("options", {}).get("use_sensitive")
        items.append(f"Sensitive columns {', '.join(sensitive)} were " + ("used as features (--use-sensitive)."
                     if used else "left out of the features; other columns may still act as proxies for them."))
    if fairness is not None:
        diffs = fairness.get("differences") or {}
        items.extend(f"Across groups, {k} = {v:.4f}." for k, v in diffs.items() if isinstance(v, (int, float)))
        constraint = fairness.get("constraint")
        if isinstance(constraint, dict):
            items.append(f"Fairness constraint {constraint.get('expression')}: "
                         f"{'met' if constraint.get('met') else 'NOT met'} on the validation rows "
                         f"(measured {constraint.get('value')}).")
    leaks = [f.get("message") for f in (record.checks or {}).get("findings", []) if f.get("check") == "leak"]
    items.extend(f"Data check: {m}" for m in leaks)
    return items


def _caveats(record: RunRecord, store: RunStore) -> list[str]:
    items = _image_caveats(record) if record.is_image else _explanation_caveats(record)
    if record.audit_check is not None:
        items.append("Audit log: " + ("hash chain intact." if record.audit_check.ok else
                                      f"BROKEN at record {record.audit_check.first_bad}; do not trust this run."))
    try:
        state = approval_state(store)
        items.append(f"Approval: {'approved' if state.approved else 'NOT approved'} ({state.summary}).")
    except RunError as exc:
        items.append(f"Approval: not available ({exc}).")
    items.append("Performance was estimated on the training data's validation rows; it may not hold under "
                 "distribution shift. Monitor the model's inputs and outcomes after deployment.")
    return items


def _image_caveats(record: RunRecord) -> list[str]:
    return ["The search ranked networks after 1 to 3 epochs of training; a network that learns slowly but "
            "ends better may have been passed over.",
            "No explanations of single predictions are computed for image runs (no saliency maps yet)."]


def _explanation_caveats(record: RunRecord) -> list[str]:
    items = []
    why = (record.explanations or {}).get("why") or {}
    tied = [r["label"] for r in why.get("runners_up", []) if not r.get("significant")]
    if tied:
        items.append(f"The chosen model is not significantly better than {', '.join(tied)} on the validation "
                     "rows; a simpler of these may serve as well.")
    if why.get("chosen", {}).get("trial", 0) is None:
        items.append("The ensemble's weights were chosen on the same out-of-fold predictions that score it, so "
                     "its validation score is slightly optimistic.")
    for part in ("feature_importance_detail", "hyperparameter_importance_detail"):
        skipped = ((record.explanations or {}).get(part) or {}).get("skipped")
        if skipped:
            items.append(f"{part.split('_detail')[0].replace('_', ' ').capitalize()} was not computed: {skipped}.")
    if record.explanations is None:
        items.append("No explanations were computed for this run (explanations.json is missing).")
    return items


def model_card(run_dir: Path) -> dict[str, Any]:
    """The card as a dict (see the module docstring)."""
    record = load_run(Path(run_dir))
    store = RunStore.open(record.root)
    schema = store.read("schema", default={"columns": []})
    fairness = record.fairness
    card: dict[str, Any] = {"schema_version": 1,
                            "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    spec = _spec(record.root)
    if record.is_image:
        sections = image_sections(record, spec)
    else:
        sections = {"model_details": _model_details(record, schema, spec),
                    "factors": _factors(schema, record.info.get("options", {}), fairness),
                    "metrics": _metrics(record, fairness), "evaluation_data": _evaluation_data(record),
                    "training_data": _training_data(record, schema),
                    "quantitative_analyses": _quantitative(record, fairness),
                    "ethical_considerations": _ethics(record, schema, fairness)}
    sections["intended_use"] = _intended_use(record)
    sections["caveats_and_recommendations"] = _caveats(record, store)
    card.update((section, sections[section]) for section in SECTIONS)
    return card


# -- Markdown -------------------------------------------------------------------------------------------------
def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        return f"{value:.4f}"
    if _is_scalar_list(value):
        return ", ".join(_cell(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "(none)"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows] + [""]


def _render(value: Any, depth: int = 0) -> list[str]:
    """Scalars (and short lists) of a mapping as a bullet list, then its nested parts as sub-headings."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _table(value)
    if isinstance(value, list):
        return [f"- {_cell(v)}" for v in value] + [""] if value else ["(none)", ""]
    if not isinstance(value, dict):
        return [_cell(value), ""]
    flat = {k: v for k, v in value.items() if not isinstance(v, (dict, list)) or not v or
            (_is_scalar_list(v) and len(v) <= 12)}
    lines = [f"- **{k.replace('_', ' ')}**: {_cell(v)}" for k, v in flat.items()]
    lines += [""] if lines else []
    for k, v in value.items():
        if k not in flat:
            lines += [f"{'#' * min(depth + 3, 6)} {k.replace('_', ' ').capitalize()}", "", *_render(v, depth + 1)]
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['model_details']['name']}", "",
             f"Generated {card['generated']} from the run record, following Mitchell et al. 2019."]
    warning = card["intended_use"].get("warning")
    if warning:
        lines += ["", f"> **{warning}**"]
    for number, section in enumerate(SECTIONS, start=1):
        lines += ["", f"## {number}. {TITLES[section]}", "", *_render(card[section])]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def write_model_card(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``model_card.md`` and ``model_card.json`` into ``out_dir`` (default: the run directory)."""
    card = model_card(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{CARD_NAME}.json", out / f"{CARD_NAME}.md"
    write_json_atomic(js, card)
    write_text_atomic(md, render_markdown(card))
    return md, js
