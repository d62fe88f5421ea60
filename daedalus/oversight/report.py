"""``daedalus report RUN``: one self-contained HTML page of what a run did, for the people who must sign it off.

Sections: the run summary (with the audit log's verification), the search (best score over time, trials per
family or designer), the leaderboard, explanations (hyperparameter and feature importance, why this model),
the final model's out-of-fold performance (ROC and calibration, or residuals), per-group fairness and the
Pareto front. A part the run does not have (no fairness audit, a single objective, explanations not computed)
is named as absent, never left out silently. The report only reads the run directory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daedalus.errors import ConfigError, RunError
from daedalus.evaluation.metrics import get_metric
from daedalus.oversight import report_plots as plots
from daedalus.oversight.approval import approval_state
from daedalus.oversight.final_predictions import FinalPredictions, final_predictions
from daedalus.oversight.report_html import any_json, figure, fmt, key_values, note, page, paragraph, section, table
from daedalus.oversight.run_record import RunRecord, load_run
from daedalus.store.atomic import write_text_atomic
from daedalus.store.run import RunStore

REPORT_FILE = "report.html"
LEADERBOARD_COLUMNS = ["rank", "trial", "family", "designer", "score", "metric", "fit_seconds", "status",
                       "fairness_gap", "feasible"]
DECISION_EVENTS = ("policy_attached", "approval", "rejection", "unapproved_use", "steer", "steer_applied",
                   "pause_expired")
IMAGE_COLUMNS = ["epochs", "params", "mflops", "latency_ms", "pareto", "architecture"]


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN/report.html``) and return its path."""
    record = load_run(run_dir)
    html = render(record)
    path = Path(out) if out is not None else record.root / REPORT_FILE
    write_text_atomic(path, html)
    return path


def render(record: RunRecord) -> str:
    parts = [
        ("summary", "Run summary", _summary(record)),
        ("search", "Search", _search(record)),
        ("leaderboard", "Leaderboard", _leaderboard(record)),
        ("explanations", "Explanations", _explanations(record)),
        ("performance", "Final model performance", _performance(record)),
        ("fairness", "Fairness by group", _fairness(record)),
        ("pareto", "Pareto front", _pareto(record)),
    ]
    sections = [section(anchor, title, *body) for anchor, title, body in parts]
    title = f"Daedalus report: {record.root.name}"
    return page(title, sections, [(anchor, name) for anchor, name, _ in parts])


# -- summary ---------------------------------------------------------------------------------------------------
def _budget(options: dict[str, Any]) -> str:
    parts = []
    if options.get("time_budget") is not None:
        parts.append(f"{options['time_budget']:g} s")
    trials = options.get("n_trials", options.get("n_candidates"))
    if trials is not None:
        parts.append(f"{trials} trials")
    return " or ".join(parts) or "none"


def _when(timestamp: Any) -> str | None:
    if not isinstance(timestamp, (int, float)):
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _audit_note(record: RunRecord) -> str:
    check = record.audit_check
    if check is None:
        return note("Audit log: this run has no audit.jsonl, so nothing it did can be verified.", "bad")
    if check.ok:
        return note(f"Audit log: intact, {check.n_records} records, hash chain verified.", "good")
    return note(f"Audit log: BROKEN at record {check.first_bad}: {check.reason}. The log was edited, cut or "
                "reordered after it was written; what this report shows from it cannot be trusted.", "bad")


def _summary(record: RunRecord) -> list[str]:
    info, options = record.info, record.info.get("options", {})
    rows = next((r.get("rows") for r in record.audit if r.get("event") in ("data_checks", "image_data")), None)
    pairs: list[tuple[str, Any]] = [
        ("run directory", str(record.root)), ("status", info.get("status")), ("created", _when(info.get("created"))),
        ("elapsed", f"{info['elapsed_seconds']:.1f} s" if isinstance(info.get("elapsed_seconds"), (int, float))
         else None),
        ("data", info.get("data_source")), ("rows", rows), ("target", options.get("target")),
        ("task", info.get("task")), ("metric", record.metric), ("validation", info.get("validation")),
        ("budget", _budget(options)), ("seed", options.get("seed")),
    ]
    if record.is_image:
        pairs += [("image shape", options.get("image_shape")), ("space", info.get("space")),
                  ("designer", options.get("designer")), ("objective", options.get("objective")),
                  ("classes", len(info.get("classes") or []) or None), ("max parameters", options.get("max_params"))]
    else:
        pairs += [("families searched", info.get("families")), ("excluded", options.get("exclude")),
                  ("sensitive columns", options.get("sensitive")),
                  ("sensitive columns used as features", options.get("use_sensitive") or None),
                  ("fairness constraint", options.get("fairness")),
                  ("objectives", options.get("objectives") if list(options.get("objectives") or []) != ["metric"]
                   else None),
                  ("policy", options.get("policy")), ("intended use", options.get("intended_use"))]
    final = next((r for r in record.leaderboard if r.get("family") == "ensemble" or r.get("designer") == "final"),
                 None)
    if final is not None:
        pairs.append(("final model", _final_description(final)))
    cards = [name for name in ("model_card.md", "model_card.json") if (record.root / name).exists()]
    pairs.append(("model card", ", ".join(cards) + " in the run directory" if cards else "not written"))
    findings = [f for f in (record.checks or {}).get("findings", []) if f.get("severity") in ("warning", "action")]
    out = [key_values(pairs), _audit_note(record), _approval_note(record)]
    if findings:
        out.append("<h3>Data check findings</h3>" + table(findings, ["severity", "check", "message"]))
    out.append("<h3>Decisions and steering</h3>" + _decisions(record))
    return out


def _approval_note(record: RunRecord) -> str:
    """Whether ``daedalus predict`` would use the model without --unapproved, as the approval gate decides."""
    if record.audit_check is None:
        return note("Approval: none can be recorded or trusted without an audit log.", "bad")
    try:
        state = approval_state(RunStore.open(record.root))
    except RunError as exc:  # no model yet, or a policy file changed since it was attached
        return note(f"Approval: cannot be decided ({exc}).", "bad")
    if state.approved:
        return note(f"Approval: the model is approved for use ({state.summary}).", "good")
    return note(f"Approval: the model is NOT approved for use ({state.summary}); 'daedalus predict' refuses it "
                "without --unapproved.", "bad")


def _decisions(record: RunRecord) -> str:
    """Every human decision the audit log holds: policies, approvals, rejections, unapproved uses, steering."""
    rows = []
    for r in record.audit:
        if r.get("event") not in DECISION_EVENTS:
            continue
        what = r.get("decision") or r.get("command") or r.get("state") or ""
        detail = r.get("reason") or r.get("effect") or r.get("family") or r.get("source") or r.get("data") or ""
        rows.append({"record": r.get("seq"), "time": _when(r.get("time")), "event": r.get("event"), "what": what,
                     "by": r.get("by") or r.get("os_user"), "detail": detail})
    if not rows:
        return note("None recorded: no policy attached, no approval or rejection, no steering command.")
    return table(rows)


def _final_description(row: dict[str, Any]) -> str:
    score = f"{row['metric']} {row['score']:.5g}" if isinstance(row.get("score"), (int, float)) else "no score"
    if row.get("members"):
        members = ", ".join(f"{m['family']} (trial {m['trial']}) x{m['weight']:.2f}" for m in row["members"])
        return f"ensemble, {row.get('kind', '')}: {members}; {score}"
    return f"{row.get('family')} (trial {row.get('trial')}, {row.get('epochs', '?')} epochs); {score}"


# -- search and leaderboard ------------------------------------------------------------------------------------
def _search(record: RunRecord) -> list[str]:
    events = record.trial_events()
    failed = sum(e.score is None for e in events)
    text = f"{len(events)} trials finished, {failed} failed." if events else ""
    if record.is_image:
        text += " Image trials are scored at the fidelity (epochs) they reached, so early scores are lower bounds."
    return [paragraph(text) if text else "",
            figure(plots.best_over_time(record), "best-over-time", "No trial result is in the audit log yet."),
            figure(plots.trial_share(record), "trial-share", "The leaderboard lists no trial yet.")]


def _absent(record: RunRecord, name: str, missing: str) -> list[str]:
    """A section's only note when the run lacks the file ``name``: the reason it could not be read (a damaged
    file sets ``record.problems``), else ``missing``, what its absence means."""
    problem = record.problems.get(name)
    return [note(f"{name} {problem}", "bad")] if problem else [note(missing)]


def _leaderboard(record: RunRecord) -> list[str]:
    if not record.leaderboard:
        return _absent(record, "leaderboard.json",
                       "No leaderboard yet: the run has not finished its search (see 'daedalus resume').")
    present = {k for row in record.leaderboard for k, v in row.items() if v not in (None, "")}
    columns = [c for c in LEADERBOARD_COLUMNS + IMAGE_COLUMNS if c in present] + ["reason"]
    rows = [{**row, "members": None} for row in record.leaderboard]
    return [table(rows, columns)]


# -- explanations ----------------------------------------------------------------------------------------------
def _skipped(detail: Any, default: str) -> str:
    reason = detail.get("skipped") if isinstance(detail, dict) else None
    return f"{default} ({reason})." if reason else f"{default}."


def _explanations(record: RunRecord) -> list[str]:
    expl = record.explanations
    if expl is None:
        what = "an image run" if record.is_image else "this run"
        return _absent(record, "explanations.json", f"Not computed: {what} has no explanations.json, so "
                       "hyperparameter importance, feature importance and 'why this model' are not shown.")
    hp, hp_detail = expl.get("hyperparameter_importance"), expl.get("hyperparameter_importance_detail")
    fi, fi_detail = expl.get("feature_importance"), expl.get("feature_importance_detail")
    out = ["<h3>Hyperparameter importance</h3>",
           figure(plots.hyperparameter_importance(hp) if isinstance(hp, dict) else None, "hp-importance",
                  _skipped(hp_detail, "Hyperparameter importance was not computed"))]
    if isinstance(hp_detail, dict) and "skipped" not in hp_detail:
        out.append("<details><summary>How it was computed</summary>" + any_json(hp_detail) + "</details>")
    out += ["<h3>Feature importance</h3>",
            figure(plots.feature_importance(fi) if isinstance(fi, list) else None, "feature-importance",
                   _skipped(fi_detail, "Feature importance was not computed"))]
    if isinstance(fi_detail, dict) and "skipped" not in fi_detail:
        out.append(key_values([(str(k), v) for k, v in fi_detail.items()]))
    if isinstance(fi, list) and fi:
        out.append("<details><summary>All feature importances</summary>" + table(fi) + "</details>")
    out += ["<h3>Why this model</h3>", *_why(expl.get("why"))]
    return out


def _why(why: Any) -> list[str]:
    if not isinstance(why, dict) or not why or "skipped" in why:
        return [note(_skipped(why, "The comparison with the runners-up was not computed"))]
    out = [paragraph(str(why["statement"])) if why.get("statement") else "",
           figure(plots.why_chosen(why), "why", "No candidate has a score to compare.")]
    runners = why.get("runners_up")
    if isinstance(runners, list) and runners:
        out.append(table([r for r in runners if isinstance(r, dict)],
                         ["label", "score", "ci", "advantage", "advantage_ci", "significant", "share_chosen_better"],
                         caption="The chosen model against each runner-up (advantage: how much better the chosen "
                                 "model scored; ci: confidence interval)"))
    if why.get("method"):
        out.append(paragraph(f"Method: {why['method']}; {why.get('resamples', '?')} resamples of "
                             f"{why.get('rows', '?')} rows, confidence {why.get('confidence', '?')}."))
    return out


# -- performance -----------------------------------------------------------------------------------------------
def _performance(record: RunRecord) -> list[str]:
    fp = final_predictions(record.root)
    if fp is None:
        return [note("No predictions of a final model on rows it did not train on are stored (no trial "
                     "finished, or the run was cut before its model was saved), so there is nothing to plot.")]
    out = [paragraph(_oof_description(record, fp))]
    if fp.task.is_classification:
        out += [figure(plots.roc(fp), "roc", ""), figure(plots.calibration(fp), "calibration", "")]
    else:
        out += [figure(plots.residuals(fp), "residuals", ""),
                figure(plots.residual_histogram(fp), "residual-histogram", "")]
    return out


def _oof_description(record: RunRecord, fp: FinalPredictions) -> str:
    members = " + ".join(f"{w:.2f} x trial {t}" for t, w in fp.members)
    what = "the final ensemble" if fp.source == "model" else "the best model so far (no final model yet)"
    try:
        metric = get_metric(record.metric, fp.task)
        score = f", out-of-fold {metric.name} {metric(fp.y, fp.pred):.5g}"
    except ConfigError:  # a metric this version does not know: the curves are shown without the number
        score = ""
    if record.is_image:
        network = f"trial {fp.members[0][0]}'s network" + ("" if fp.source == "model" else " (no final training)")
        return (f"Predictions of the handed-back network ({network}) on the {len(fp.y)} held-out images{score}: "
                "no network trained on them, though they chose the architecture.")
    return (f"Out-of-fold predictions of {what} ({members}) on {len(fp.y)} training rows{score}: each row is "
            "predicted by models that did not see it.")


# -- fairness and Pareto ---------------------------------------------------------------------------------------
FAIRNESS_SHOWN = ("sensitive", "constraint", "overall", "differences", "differences_by_column", "by_group",
                  "intersectional", "metrics", "version")


def _constraint_note(constraint: Any) -> str:
    if not isinstance(constraint, dict):
        return note("No fairness constraint was set for the search (build with --fairness to set one).")
    expression = constraint.get("expression", "the constraint")
    numbers = ", ".join(f"{k} {fmt(constraint[k])}" for k in ("value", "se", "bound") if k in constraint)
    small = constraint.get("small_groups")
    tail = f"; groups too small to constrain: {fmt(small)}" if small else ""
    if constraint.get("met") is True:
        return note(f"Constraint {expression}: met ({numbers}){tail}.", "good")
    if constraint.get("met") is False:
        return note(f"Constraint {expression}: NOT met ({numbers}){tail}.", "bad")
    return note(f"Constraint {expression} ({numbers}){tail}.")


def _fairness(record: RunRecord) -> list[str]:
    fair = record.fairness
    if fair is None:
        hint = "" if record.is_image else " Build with --sensitive COLS to audit groups defined by those columns."
        return _absent(record, "fairness.json", "Not computed: this run has no fairness.json." + hint)
    details = [("sensitive columns", fair.get("sensitive"))]
    details += [(str(k), v) for k, v in fair.items() if k not in FAIRNESS_SHOWN and not isinstance(v, (dict, list))]
    out = [key_values(details), _constraint_note(fair.get("constraint"))]
    if isinstance(fair.get("overall"), dict):
        out.append("<h3>Overall</h3>" + key_values([(str(k), v) for k, v in fair["overall"].items()]))
    if isinstance(fair.get("differences"), dict) and fair["differences"]:
        rows = [{"measure": "all sensitive columns together", **fair["differences"]}]
        by_column = fair.get("differences_by_column")
        if isinstance(by_column, dict):
            rows += [{"measure": str(c), **d} for c, d in by_column.items() if isinstance(d, dict)]
        out.append("<h3>Differences between groups</h3>" + table(rows))
    metrics = [m for m in fair.get("metrics", []) if isinstance(m, str)] or None
    for key, title in (("by_group", "Per group"), ("intersectional", "Intersectional groups")):
        rows = _rows(fair.get(key))
        if rows:
            out += [f"<h3>{title}</h3>", figure(plots.fairness_by_group(rows, title, metrics), f"fair-{key}", ""),
                    table(rows)]
    rest = {k: v for k, v in fair.items() if k not in FAIRNESS_SHOWN and isinstance(v, (dict, list))}
    if rest:
        out.append("<h3>Details</h3>" + any_json(rest))
    return out


def _rows(value: Any) -> list[dict[str, Any]]:
    """Fairness rows, as a list, or as {sensitive column: rows} (flattened with the column named)."""
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    if isinstance(value, dict):
        return [{"sensitive": name, **r} for name, rows in value.items() if isinstance(rows, list)
                for r in rows if isinstance(r, dict)]
    return []


def _pareto(record: RunRecord) -> list[str]:
    front_file = record.pareto
    if front_file is None:
        how = "--objective accuracy,params" if record.is_image else "--objectives metric,fairness"
        return _absent(record, "pareto.json",
                       f"Not computed: the run searched a single objective (build with {how} for a front).")
    objectives = [str(o) for o in front_file.get("objectives", [])]
    front = _rows(front_file.get("front"))
    others = [r for r in record.leaderboard if r.get("designer") != "final"]
    return [paragraph(f"Objectives: {', '.join(objectives)}. {len(front)} candidates are on the front: no other "
                      "candidate is at least as good on every objective and better on one."),
            figure(plots.pareto(front, objectives, others), "pareto", "The front has no point with both objectives."),
            table(front)]
