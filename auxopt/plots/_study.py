"""Any study's plots: the dev curves of its trials and its best configuration in words."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from auxopt import records
from auxopt.plots._autosem import thompson_data
from auxopt.plots._common import PALETTE, NoData, _best_trial, _fmt, _layout, _trials
from auxopt.stats import verdict_lines

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go


# -- dev curves -----------------------------------------------------------------------------------
def dev_curves_data(study: optuna.Study, max_trials: int = 40) -> dict[str, Any] | None:
    """The primary dev curve (user_attr ``curve`` = ``[[step, dev], ...]``) of each finished trial;
    with more than ``max_trials``, the best ``max_trials`` by value (and the best always)."""
    trials = [t for t in _trials(study) if t.user_attrs.get(records.CURVE)]
    if not trials:
        return None
    best = _best_trial(study)
    if len(trials) > max_trials:
        import optuna

        sign = -1 if study.direction == optuna.study.StudyDirection.MINIMIZE else 1
        trials = sorted(trials, key=lambda t: -sign * (t.value if t.value is not None else -math.inf))
        trials = sorted(trials[:max_trials], key=lambda t: t.number)
    return {
        "metric": study.user_attrs.get(records.METRIC, "metric"),
        "best": best.number if best is not None else None,
        "curves": {
            t.number: {
                "steps": [int(s) for s, _ in t.user_attrs[records.CURVE]],
                "dev": [float(v) for _, v in t.user_attrs[records.CURVE]],
                "state": t.state.name,
            }
            for t in trials
        },
    }


def plot_dev_curves(study: optuna.Study, max_trials: int = 40) -> go.Figure:
    """The primary dev metric over training steps, one line per trial (the best one bold)."""
    import plotly.graph_objects as go

    data = dev_curves_data(study, max_trials)
    if data is None:
        raise NoData(f"study {study.study_name!r} has no finished trial with a dev curve")
    fig = go.Figure()
    for number, c in data["curves"].items():
        best = number == data["best"]
        fig.add_trace(
            go.Scatter(
                x=c["steps"],
                y=c["dev"],
                mode="lines+markers" if best else "lines",
                name=f"trial {number}" + (" (best)" if best else "" if c["state"] == "COMPLETE" else " (pruned)"),
                line={
                    "width": 3 if best else 1.2,
                    "color": PALETTE[1] if best else "#9aa7b8",
                    "dash": "dot" if c["state"] == "PRUNED" else "solid",
                },
                opacity=1.0 if best else 0.7,
                showlegend=best,
            )
        )
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text=f"dev {data['metric']}")
    return _layout(fig, f"Primary dev curve per trial ({len(data['curves'])} trials)")


# -- the best configuration, in words -------------------------------------------------------------
def best_summary(study: optuna.Study) -> str:
    """A markdown note: the best trial's tasks, ratios and scores, in words."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    counts = (
        f"{states[optuna.trial.TrialState.COMPLETE]} complete, "
        f"{states[optuna.trial.TrialState.PRUNED]} pruned, "
        f"{states[optuna.trial.TrialState.FAIL]} failed, "
        f"{states[optuna.trial.TrialState.RUNNING]} running"
    )
    lines = [f"## auxopt: {study.study_name}", "", f"Trials: {counts}.", ""]
    best = _best_trial(study)
    if best is None:
        lines.append("No trial has completed yet.")
        return "\n".join(lines)
    metric = best.user_attrs.get(records.METRIC, study.user_attrs.get(records.METRIC, "value"))
    config = best.user_attrs.get(records.CONFIG, {})
    primary = config.get("primary", study.user_attrs.get(records.PRIMARY, "the primary task"))
    ratios = config.get("ratios") or {}
    aux = {k: v for k, v in ratios.items() if k != primary}
    if aux:
        mix = ", ".join(f"**{k}** at ratio {_fmt(v)}" for k, v in aux.items())
        tasks = f"trains **{primary}** (ratio {_fmt(ratios.get(primary, 1))}) with {mix}"
    elif ratios:
        tasks = f"trains **{primary}** alone (no auxiliary task helped more)"
    else:
        tasks = f"trains **{primary}**"
    test = best.user_attrs.get(records.TEST_METRIC)
    score = f"dev {metric} **{best.value:.4f}**" + (f", test {metric} {test:.4f}" if test is not None else "")
    lines.append(f"The best configuration so far (trial {best.number}) {tasks}: {score}.")
    if "lr" in config:
        lines[-1] += f" Learning rate {config['lr']:.3g}."
    thompson = thompson_data(study)
    if thompson is not None:
        ranked = sorted(zip(thompson["tasks"], thompson["mean"], strict=True), key=lambda x: -x[1])
        lines += [
            "",
            "Thompson utilities (undecayed win rates with the prior): "
            + ", ".join(f"{k} {m:.2f}" for k, m in ranked)
            + " (AutoSeM keeps the tasks above the primary-only arm's).",
        ]
    selected = study.user_attrs.get(records.SELECTED_TASKS)
    if selected is not None:
        lines += ["", f"AutoSeM stage 1 kept: {', '.join(selected) or 'no auxiliary task'}."]
    if best.params:
        lines += ["", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in best.params.items()]
    verdict = study.user_attrs.get(records.VERDICT)
    if isinstance(verdict, dict):
        of = verdict.get("of", {})
        lines += ["", f"### Verified (auxopt verify, trial {of.get('trial')})", "", *verdict_lines(verdict)]
    return "\n".join(lines)
