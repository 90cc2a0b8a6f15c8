"""What every plot shares: the palette, the empty-study error, the layout and the trials read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auxopt.errors import AuxoptError

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go


INTERVAL = 0.90  # the credible interval drawn around each posterior mean


PALETTE = (
    "#4C78A8",
    "#F58518",
    "#54A24B",
    "#E45756",
    "#72B7B2",
    "#B279A2",
    "#FF9DA6",
    "#9D755D",
    "#BAB0AC",
    "#EECA3B",
)


class NoData(AuxoptError):
    """The study holds nothing this plot draws (yet)."""


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    """A light layout without plotly's default template (which adds ~6 kB to every stored figure)."""
    fig.update_layout(
        template="none",
        title={"text": title, "x": 0.02, "font": {"size": 15}},
        margin={"l": 55, "r": 20, "t": 55, "b": 45},
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={"family": "Helvetica, Arial, sans-serif", "size": 12},
        legend={"orientation": "h", "y": -0.18},
        **kwargs,
    )
    fig.update_xaxes(showgrid=True, gridcolor="#e5e5e5", zeroline=False, linecolor="#999")
    fig.update_yaxes(showgrid=True, gridcolor="#e5e5e5", zeroline=False, linecolor="#999")
    return fig


def _trials(study: optuna.Study, finished_only: bool = True) -> list[optuna.trial.FrozenTrial]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = study.get_trials(deepcopy=False)
    return [t for t in trials if t.state in states] if finished_only else list(trials)


def _best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


# -- AANG objective weights -----------------------------------------------------------------------
def _trial_with(study: optuna.Study, key: str, trial: int | None):
    trials = [t for t in study.get_trials(deepcopy=False) if key in t.user_attrs]
    if not trials:
        return None
    if trial is not None:
        chosen = [t for t in trials if t.number == trial]
        if not chosen:
            raise AuxoptError(f"trial {trial} of study {study.study_name!r} has no {key!r} record")
        return chosen[0]
    best = _best_trial(study)
    if best is not None and key in best.user_attrs:
        return best
    return trials[-1]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
