"""AutoSeM's plots: stage 1's Thompson posteriors and stage 2's mixing-ratio landscape (the GP's mean
along each ratio through the best point)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.plots._common import INTERVAL, PALETTE, NoData, _layout, _trials

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go


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
