"""auxopt's plots as plain plotly figures, built from what a study keeps in storage.

Each ``plot_*`` function takes an :class:`optuna.Study` (loaded from any storage) and returns a
:class:`plotly.graph_objects.Figure`; each ``*_data`` function returns the numbers the figure draws,
so that they can be checked against the study. :mod:`auxopt.dashboard` publishes the same figures
into optuna-dashboard. Where a study holds nothing to draw, the ``*_data`` function returns ``None``
and the ``plot_*`` function raises :class:`NoData` (an :class:`~auxopt.errors.AuxoptError`).

What each plot reads (trial user_attrs written by the rest of auxopt):

* Thompson posteriors: ``thompson_posterior_mean`` / ``thompson_pulls`` (the
  :class:`~auxopt.samplers.ThompsonTaskSampler`), or ``thompson_posterior`` / ``thompson_history``
  (the online schedule, :class:`~auxopt.train.OnlineThompson`).
* Mixing-ratio landscape: the numerical parameters named ``*ratio*`` of the COMPLETE trials.
* AANG objective weights: ``aang_weights``.
* ATTITTUD gradient parts: ``grad_parts``.
* Dev curves: ``curve``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.stats import verdict_lines

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go

__all__ = [
    "aang_weights_data",
    "NoData",
    "best_summary",
    "dev_curves_data",
    "grad_parts_data",
    "mixing_landscape_data",
    "plot_aang_weights",
    "plot_dev_curves",
    "plot_grad_parts",
    "plot_mixing_landscape",
    "plot_thompson",
    "thompson_data",
]

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


# -- Thompson sampling (AutoSeM stage 1) ----------------------------------------------------------
def beta_interval(alpha: float, beta: float, mass: float = INTERVAL) -> tuple[float, float]:
    """The equal-tailed credible interval of Beta(α, β) holding ``mass``:
    ``(F⁻¹((1 − mass)/2), F⁻¹((1 + mass)/2))`` with ``F`` the Beta CDF."""
    from scipy.stats import beta as beta_dist

    low, high = beta_dist.ppf([(1 - mass) / 2, (1 + mass) / 2], alpha, beta)
    return float(low), float(high)


def thompson_data(study: optuna.Study, sampler: Any = None) -> dict[str, Any] | None:
    """The bandit's evidence per task and its pulls over time, or ``None`` without a bandit.

    Returns ``{"source", "tasks", "alpha", "beta", "mean", "low", "high", "time_label",
    "time", "pulls"}``: α, β the undecayed evidence (prior + wins, prior + losses) that AutoSeM
    selects on, ``mean = α / (α + β)`` each task's utility, ``low``/``high`` the 90% interval of
    Beta(α, β), and ``pulls[task]`` the cumulative pulls at each ``time``.

    * Online schedule (``thompson_posterior`` on a trial; the last such COMPLETE trial counts):
      α, β are stored (``thompson_evidence``; the decayed ``thompson_posterior`` for runs from
      before it was recorded); the pulls come from ``thompson_history`` (time = training step).
    * :class:`~auxopt.samplers.ThompsonTaskSampler`: α, β are replayed from the trials by
      ``sampler.evidence(study)`` — the sampler given, else ``study.sampler`` when it is one,
      else a sampler with the default prior and decay; the pulls come from each trial's
      ``thompson_pulls`` (time = trial number).
    """
    import optuna

    trials = study.get_trials(deepcopy=False)
    online = [
        t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and records.THOMPSON_POSTERIOR in t.user_attrs
    ]
    if online:
        attrs = online[-1].user_attrs
        stored = attrs.get(records.THOMPSON_EVIDENCE, attrs[records.THOMPSON_POSTERIOR])
        posterior = {k: (float(a), float(b)) for k, (a, b) in stored.items()}
        tasks = list(posterior)
        counts = dict.fromkeys(tasks, 0)
        time, pulls = [0], {k: [0] for k in tasks}
        for step, task, *_ in attrs.get(records.THOMPSON_HISTORY, []):
            if task not in counts:
                continue
            counts[task] += 1
            time.append(int(step))
            for k in tasks:
                pulls[k].append(counts[k])
        return _posterior_record("online schedule", posterior, "training step", time, pulls)

    marked = [t for t in trials if records.THOMPSON_POSTERIOR_MEAN in t.user_attrs]
    if not marked:
        return None
    from auxopt.samplers import ThompsonTaskSampler

    if sampler is None and isinstance(getattr(study, "sampler", None), ThompsonTaskSampler):
        sampler = study.sampler
    if sampler is None:
        sampler = ThompsonTaskSampler(seed=0)
    posterior: dict[Hashable, tuple[float, float]] = dict(sampler.evidence(study))
    tasks = [str(k) for k in posterior]
    time, pulls = [], {k: [] for k in tasks}
    for t in sorted(marked, key=lambda t: t.number):
        counts = t.user_attrs.get(records.THOMPSON_PULLS, {})
        time.append(t.number)
        for k in tasks:
            pulls[k].append(int(counts.get(k, 0)))
    posterior = {str(k): (float(a), float(b)) for k, (a, b) in posterior.items()}
    return _posterior_record("ThompsonTaskSampler", posterior, "trial", time, pulls)


def _posterior_record(
    source: str,
    posterior: Mapping[str, tuple[float, float]],
    time_label: str,
    time: Sequence[int],
    pulls: Mapping[str, Sequence[int]],
) -> dict[str, Any]:
    tasks = list(posterior)
    alpha = [posterior[k][0] for k in tasks]
    beta = [posterior[k][1] for k in tasks]
    intervals = [beta_interval(a, b) for a, b in zip(alpha, beta, strict=True)]
    return {
        "source": source,
        "tasks": tasks,
        "alpha": alpha,
        "beta": beta,
        "mean": [a / (a + b) for a, b in zip(alpha, beta, strict=True)],
        "low": [lo for lo, _ in intervals],
        "high": [hi for _, hi in intervals],
        "time_label": time_label,
        "time": list(time),
        "pulls": {k: list(v) for k, v in pulls.items()},
    }


def plot_thompson(study: optuna.Study, sampler: Any = None) -> go.Figure:
    """Thompson posteriors per task (mean and 90% interval) and pulls over time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = thompson_data(study, sampler)
    if data is None:
        raise NoData(
            f"study {study.study_name!r} has no Thompson-sampling record; it needs a "
            "ThompsonTaskSampler or the OnlineThompson schedule"
        )
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        horizontal_spacing=0.12,
        subplot_titles=("utility (undecayed evidence), 90% interval", f"pulls by {data['time_label']}"),
    )
    mean, low, high = data["mean"], data["low"], data["high"]
    fig.add_trace(
        go.Bar(
            x=data["tasks"],
            y=mean,
            name="posterior mean",
            showlegend=False,
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(mean))],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [h - m for h, m in zip(high, mean, strict=True)],
                "arrayminus": [m - lo for m, lo in zip(mean, low, strict=True)],
                "color": "#333",
            },
            customdata=list(zip(data["alpha"], data["beta"], low, high, strict=True)),
            hovertemplate="%{x}: mean %{y:.3f}<br>α=%{customdata[0]:.2f} β=%{customdata[1]:.2f}"
            "<br>90%: [%{customdata[2]:.3f}, %{customdata[3]:.3f}]<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_hline(y=0.5, line_dash="dot", line_color="#888", row=1, col=1)
    for i, task in enumerate(data["tasks"]):
        fig.add_trace(
            go.Scatter(
                x=data["time"],
                y=data["pulls"][task],
                name=task,
                mode="lines",
                line={"shape": "hv", "color": PALETTE[i % len(PALETTE)]},
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(range=[0, 1], title_text="P(helps)", row=1, col=1)
    fig.update_yaxes(title_text="pulls", row=1, col=2)
    fig.update_xaxes(title_text=data["time_label"], row=1, col=2)
    return _layout(fig, f"Thompson task selection ({data['source']})")


# -- mixing ratios (AutoSeM stage 2) --------------------------------------------------------------
def _ratio_space(trials, params: Sequence[str] | None):
    from optuna.distributions import FloatDistribution, IntDistribution

    numeric: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            if isinstance(dist, (FloatDistribution, IntDistribution)) and not dist.single():
                numeric.setdefault(name, dist)
    if params is None:
        params = [n for n in numeric if "ratio" in n.lower()] or list(numeric)
    missing = [p for p in params if p not in numeric]
    if missing:
        raise AuxoptError(f"no finished trial has numerical parameter(s) {missing}; the study has {sorted(numeric)}")
    # the widest bounds any trial used, so that every observed point lies inside
    space = {}
    for name in params:
        dists = [t.distributions[name] for t in trials if name in t.distributions]
        first = dists[0]
        low = min(d.low for d in dists)
        high = max(d.high for d in dists)
        space[name] = type(first)(low, high, log=first.log, step=first.step)
    return space


def mixing_landscape_data(
    study: optuna.Study, params: Sequence[str] | None = None, points: int = 60
) -> dict[str, Any] | None:
    """The GP mean along each mixing ratio, through the best trial, and the observed points.

    The GP is the one :class:`~auxopt.samplers.MixingRatioSampler` fits (``SingleTaskGP``,
    Matérn-5/2 ARD with dimension-scaled priors, standardised outcomes, on the sampler's
    :class:`~auxopt.samplers.UnitCube` coordinates and its data rule,
    :func:`~auxopt.samplers.mixing_observations`: COMPLETE trials with their value, PRUNED ones with
    their last report). Along ratio ``d`` the other coordinates stay at the
    best observed point; the curve is the posterior mean ``μ(u)`` and ``μ ± 2σ`` (no noise).

    ``params`` defaults to the numerical parameters whose names contain ``ratio`` (else all
    numerical ones). Returns ``None`` with fewer than two usable trials or no numerical parameter.
    """
    import numpy as np

    from auxopt.samplers import mixing_observations

    trials = _trials(study)
    try:
        space = _ratio_space(trials, params)
    except AuxoptError:
        if params is not None:
            raise
        return None
    if not space:
        return None
    used = [t for t in trials if all(p in t.params for p in space)]
    data = mixing_observations(study, space, trials=used)
    cube, X, y = data.cube, data.X, data.y
    if len(y) < 2:
        return None
    sign = -1.0 if data.minimize else 1.0
    best = int(np.argmax(y))
    grid_u = np.linspace(0.0, 1.0, points)
    curves: dict[str, dict[str, list[float]]] = {}
    if np.ptp(y) > 0:
        mean, std = _gp_slices(cube, X, y, X[best], grid_u)
    else:  # nothing to model: a flat line at the common value
        mean = np.full((cube.dim, points), y[0])
        std = np.zeros((cube.dim, points))
    for d, name in enumerate(cube.names):
        x = [cube.value_at(name, u) for u in grid_u]
        curves[name] = {
            "x": x,
            "mean": (sign * mean[d]).tolist(),
            "low": (sign * (mean[d] - 2 * std[d])).tolist(),
            "high": (sign * (mean[d] + 2 * std[d])).tolist(),
            "observed_x": [float(t.params[name]) for t in data.trials],
            "observed_y": (sign * y).tolist(),
            "log": bool(cube.distribution(name).log),
        }
    return {
        "params": list(cube.names),
        "best": {n: float(v) for n, v in zip(cube.names, cube.decode(X[best]).values(), strict=True)},
        "curves": curves,
        "metric": study.user_attrs.get(records.METRIC, "objective"),
        "n": len(y),
    }


def _gp_slices(cube, X, y, anchor, grid_u):
    """Fit the sampler's GP to (X, y) and return mean and std, ``(dim, len(grid_u))`` each, along
    each coordinate through ``anchor``."""
    import numpy as np
    import torch

    from auxopt.samplers._gp import fit_gp

    tkw = {"dtype": torch.float64}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        X_t, y_t = torch.as_tensor(X, **tkw), torch.as_tensor(y, **tkw).unsqueeze(-1)
        try:
            model = fit_gp(X_t, y_t)
        except Exception:  # a failed fit: draw the prior-initialised GP rather than nothing
            from botorch.models import SingleTaskGP

            model = SingleTaskGP(X_t, y_t)
        points = np.repeat(anchor[None, None, :], cube.dim, axis=0).repeat(len(grid_u), axis=1)
        for d in range(cube.dim):
            points[d, :, d] = grid_u
        with torch.no_grad():
            post = model.posterior(torch.as_tensor(points.reshape(-1, cube.dim), **tkw))
            mean = post.mean.squeeze(-1).reshape(cube.dim, len(grid_u)).numpy()
            std = post.variance.clamp_min(0).sqrt().squeeze(-1).reshape(cube.dim, -1).numpy()
    return mean, std


def plot_mixing_landscape(study: optuna.Study, params: Sequence[str] | None = None) -> go.Figure:
    """The mixing-ratio landscape: GP mean (± 2σ) along each ratio and the observed trials."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = mixing_landscape_data(study, params)
    if data is None:
        raise NoData(
            f"study {study.study_name!r} has fewer than two finished trials with numerical "
            "(ratio) parameters; nothing to fit"
        )
    names = data["params"]
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.06)
    for i, name in enumerate(names, start=1):
        c = data["curves"][name]
        first = i == 1
        fig.add_trace(
            go.Scatter(
                x=c["x"] + c["x"][::-1],
                y=c["high"] + c["low"][::-1],
                fill="toself",
                fillcolor="rgba(76,120,168,0.18)",
                line={"width": 0},
                hoverinfo="skip",
                name="GP mean ± 2σ",
                showlegend=first,
            ),
            row=1,
            col=i,
        )
        fig.add_trace(
            go.Scatter(
                x=c["x"], y=c["mean"], mode="lines", line={"color": PALETTE[0]}, name="GP mean", showlegend=first
            ),
            row=1,
            col=i,
        )
        fig.add_trace(
            go.Scatter(
                x=c["observed_x"],
                y=c["observed_y"],
                mode="markers",
                marker={"color": PALETTE[1], "size": 7, "line": {"width": 1, "color": "#333"}},
                name="trials",
                showlegend=first,
            ),
            row=1,
            col=i,
        )
        fig.add_vline(x=data["best"][name], line_dash="dot", line_color="#888", row=1, col=i)
        fig.update_xaxes(title_text=name, type="log" if c["log"] else "linear", row=1, col=i)
    fig.update_yaxes(title_text=f"dev {data['metric']}", row=1, col=1)
    return _layout(fig, f"Mixing-ratio landscape ({data['n']} trials; others at the best)")


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


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
