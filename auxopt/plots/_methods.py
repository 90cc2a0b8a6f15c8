"""The methods' inner records: AANG's objective weights and ATTITTUD's gradient parts over a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.plots._common import PALETTE, NoData, _layout, _trial_with

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go


def aang_weights_data(study: optuna.Study, trial: int | None = None, top: int = 8) -> dict[str, Any] | None:
    """AANG's objective weights over training steps for one trial (default: the best trial that has
    them, else the latest), from user_attr ``aang_weights`` = ``{"steps", "objectives", "weights"
    (one row per step, one column per objective), "primary_weight"}``. ``top`` objectives are kept,
    ranked by their mean weight over the run; the rest are summed into ``"other"``."""
    t = _trial_with(study, records.AANG_WEIGHTS, trial)
    if t is None:
        return None
    record = t.user_attrs[records.AANG_WEIGHTS]
    steps = [int(s) for s in record["steps"]]
    names = [str(n) for n in record["objectives"]]
    rows = [[float(w) for w in row] for row in record["weights"]]
    if len(rows) != len(steps) or any(len(r) != len(names) for r in rows):
        raise AuxoptError(
            f"trial {t.number}'s aang_weights is malformed: {len(steps)} steps, {len(rows)} weight "
            f"rows, {len(names)} objectives"
        )
    columns = {n: [r[j] for r in rows] for j, n in enumerate(names)}
    ranked = sorted(names, key=lambda n: -sum(columns[n]) / max(1, len(steps)))
    kept = ranked[:top]
    rest = ranked[top:]
    weights = {n: columns[n] for n in kept}
    if rest:
        weights["other"] = [sum(columns[n][i] for n in rest) for i in range(len(steps))]
    return {
        "trial": t.number,
        "steps": steps,
        "weights": weights,
        "top": [(n, sum(columns[n]) / max(1, len(steps)), columns[n][-1] if steps else 0.0) for n in kept],
        "primary_weight": [float(w) for w in record.get("primary_weight", [])],
    }


def plot_aang_weights(study: optuna.Study, trial: int | None = None, top: int = 8) -> go.Figure:
    """AANG: the objective weights over training steps, and the top objectives by mean weight."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = aang_weights_data(study, trial, top)
    if data is None:
        raise NoData(f"study {study.study_name!r} has no trial with an 'aang_weights' record")
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.08,
        subplot_titles=("weight by step", "top objectives (mean weight)"),
    )
    for i, (name, values) in enumerate(data["weights"].items()):
        fig.add_trace(
            go.Scatter(x=data["steps"], y=values, mode="lines", name=name, line={"color": PALETTE[i % len(PALETTE)]}),
            row=1,
            col=1,
        )
    if data["primary_weight"] and len(data["primary_weight"]) == len(data["steps"]):
        fig.add_trace(
            go.Scatter(
                x=data["steps"],
                y=data["primary_weight"],
                mode="lines",
                name="primary",
                line={"color": "#222", "dash": "dash"},
            ),
            row=1,
            col=1,
        )
    top = data["top"][::-1]
    # objective names are long (data|transform|representation|output): written on the bars, not as
    # tick labels, which would run into the left panel
    fig.add_trace(
        go.Bar(
            x=[m for _, m, _ in top],
            y=[n for n, _, _ in top],
            orientation="h",
            text=[n for n, _, _ in top],
            textposition="inside",
            insidetextanchor="start",
            textfont={"color": "white", "size": 10},
            marker_color=PALETTE[0],
            showlegend=False,
            name="mean weight",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="training step", row=1, col=1)
    fig.update_yaxes(title_text="weight", row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    return _layout(fig, f"AANG objective weights (trial {data['trial']})")


# -- ATTITTUD gradient parts ----------------------------------------------------------------------
GRAD_PARTS = (("pos", "aux ∥ +"), ("neg", "aux ∥ −"), ("perp", "aux ⊥"), ("prim", "primary"))


def grad_parts_data(study: optuna.Study, trial: int | None = None) -> dict[str, Any] | None:
    """ATTITTUD's gradient-part norms over steps for one trial (default: the best that has them),
    from user_attr ``grad_parts`` = ``{"steps", "pos", "neg", "perp", "prim"}``: the norms of the
    auxiliary gradient's parts in the primary subspace that agree (+) and disagree (−) with the
    primary gradient, of the part orthogonal to the subspace (⊥), and of the primary gradient."""
    t = _trial_with(study, records.GRAD_PARTS, trial)
    if t is None:
        return None
    record = t.user_attrs[records.GRAD_PARTS]
    steps = [int(s) for s in record["steps"]]
    parts = {k: [float(v) for v in record[k]] for k, _ in GRAD_PARTS if k in record}
    bad = [k for k, v in parts.items() if len(v) != len(steps)]
    if bad:
        raise AuxoptError(
            f"trial {t.number}'s grad_parts is malformed: {bad} do not have one value per step ({len(steps)} steps)"
        )
    return {"trial": t.number, "steps": steps, "parts": parts}


def plot_grad_parts(study: optuna.Study, trial: int | None = None) -> go.Figure:
    """ATTITTUD: the norms of the gradient parts (+, −, ⊥, primary) over training steps."""
    import plotly.graph_objects as go

    data = grad_parts_data(study, trial)
    if data is None:
        raise NoData(f"study {study.study_name!r} has no trial with a 'grad_parts' record")
    fig = go.Figure()
    colors = {"pos": PALETTE[2], "neg": PALETTE[3], "perp": PALETTE[0], "prim": "#222"}
    for key, label in GRAD_PARTS:
        if key in data["parts"]:
            fig.add_trace(
                go.Scatter(
                    x=data["steps"],
                    y=data["parts"][key],
                    mode="lines",
                    name=label,
                    line={"color": colors[key], "dash": "dash" if key == "prim" else "solid"},
                )
            )
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="gradient norm")
    return _layout(fig, f"ATTITTUD gradient parts (trial {data['trial']})")
