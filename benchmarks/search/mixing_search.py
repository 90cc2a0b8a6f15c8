"""AutoSeM stage 2: how fast does ``MixingRatioSampler`` find good mixing ratios?

Side by side in one run, at equal trial budgets, with Optuna's ``RandomSampler``, ``TPESampler``
and ``GPSampler`` (each study gets sampler seed ``s`` for seed ``s``):

* **synthetic** — noisy landscapes over ``d`` ratios ``r_i`` in [0, 5] (``suggest_float
  ("ratio_i", 0, 5)``) with an interior optimum::

      f(r) = -sum_i w_i e_i^2 - sum_i c_i e_i e_(i+1),   e_i = log1p(r_i) - log1p(r*_i)

  with ``r*_i ~ U(0.5, 4)``, ``w_i ~ U(0.5, 2)``, ``c_i ~ U(-0.4, 0.4)`` (the quadratic form stays
  positive definite, so the optimum is ``f(r*) = 0``), drawn per (d, seed); a trial observes
  ``f(r) + N(0, sigma^2)``, the same noise draw for trial ``k`` under every sampler. The score after
  ``k`` trials is the **regret of the incumbent**: ``0 - f(r)`` noise-free, for the trial with the
  best *noisy* value among the first ``k`` (what a user would pick);
* **real** — stage 2 on real data with the tiny model: primary TREC (600 train examples), auxiliaries
  SST-2, SUBJ and MR (1,500 each); a trial trains with ratios ``{trec: 1, aux: suggest_float
  ("ratio_aux", 0, 5)}`` for 150 steps (training seed fixed), value = TREC dev accuracy.

    python benchmarks/search/mixing_search.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

SCALES = {
    # synthetic seeds and trials a study; real-data sampler seeds and trials a study
    "ci": dict(seeds=2, trials=20, real=False, real_seeds=1, real_trials=10),
    "cpu": dict(seeds=5, trials=40, real=True, real_seeds=2, real_trials=20),
}
TITLE = "Mixing-ratio search efficiency (benchmarks/search/mixing_search.py)"
CHECKPOINTS = (10, 20, 40)
LOW, HIGH = 0.0, 5.0
SIGMA = 0.1
AUX = ("sst2", "subj", "mr")
TRAIN = dict(model="tiny", max_steps=150, eval_every=75, max_length=40, batch_size=32, seed=0)


SAMPLERS = ("MixingRatioSampler", "GPSampler", "TPESampler", "RandomSampler")
#: the paired comparison the table ends with: auxopt's sampler against the best of Optuna's for this problem
PAIR = ("MixingRatioSampler", "GPSampler")


def samplers() -> dict:
    """Name → factory(seed). Optuna's samplers at their defaults (10 random startup trials)."""
    import optuna

    from auxopt.samplers import MixingRatioSampler

    return {
        "MixingRatioSampler": lambda s: MixingRatioSampler(seed=s),
        "GPSampler": lambda s: optuna.samplers.GPSampler(seed=s),
        "TPESampler": lambda s: optuna.samplers.TPESampler(seed=s),
        "RandomSampler": lambda s: optuna.samplers.RandomSampler(seed=s),
    }


class Landscape:
    """The synthetic objective for ``d`` ratios and one seed (see the module docstring)."""

    def __init__(self, d: int, seed: int):
        rng = np.random.default_rng([d, seed])
        self.d, self.seed = d, seed
        self.z_star = np.log1p(rng.uniform(0.5, 4.0, d))
        self.w = rng.uniform(0.5, 2.0, d)
        self.c = rng.uniform(-0.4, 0.4, d - 1)

    def true_value(self, r: np.ndarray) -> float:
        e = np.log1p(r) - self.z_star
        return float(-(self.w @ e**2) - self.c @ (e[:-1] * e[1:]))

    def __call__(self, trial) -> float:
        r = np.array([trial.suggest_float(f"ratio_{i}", LOW, HIGH) for i in range(self.d)])
        true = self.true_value(r)
        trial.set_user_attr("true", true)
        noise = np.random.default_rng([self.d, self.seed, trial.number, 1]).normal()
        return true + SIGMA * noise


def random_regret(d: int, n_seeds: int, n: int = 4000) -> float:
    """The regret of a uniformly random point, averaged over the landscapes of the seeds."""
    rng = np.random.default_rng(0)
    return float(
        np.mean([-Landscape(d, s).true_value(r) for s in range(n_seeds) for r in rng.uniform(LOW, HIGH, (n, d))])
    )


def incumbents(study, checkpoints, score) -> list[float]:
    """``score(trial)`` of the trial with the best value among the first ``k``, for each ``k``."""
    trials = sorted(study.trials, key=lambda t: t.number)
    return [score(max(trials[:k], key=lambda t: t.value)) for k in checkpoints]


def run_study(factory, seed: int, objective, trials: int, workers: int = 1):
    """A study of ``trials`` trials; with ``workers`` > 1 as asynchronous workers would run it: each
    trial is asked while the previous ``workers - 1`` are still RUNNING (their parameters known,
    their values not), which are then told one at a time, the oldest first."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=factory(seed))
    start = time.perf_counter()
    if workers == 1:
        study.optimize(objective, n_trials=trials)
    else:
        running = []
        for _ in range(trials):
            if len(running) == workers:
                study.tell(*running.pop(0))
            trial = study.ask()
            running.append((trial, objective(trial)))
        for trial, value in running:
            study.tell(trial, value)
    return study, time.perf_counter() - start


def real_tasks():
    from auxopt.tasks import load_task

    primary = load_task("trec", max_train=600)
    return primary, [load_task(n, max_train=1500) for n in AUX]


def real_objective(primary, auxiliaries):
    from auxopt.objective import Objective
    from auxopt.train import TrainConfig

    def build(trial):
        ratios = {primary.name: 1.0}
        for task in auxiliaries:
            ratios[task.name] = trial.suggest_float(f"ratio_{task.name}", LOW, HIGH)
        return TrainConfig(primary, auxiliaries, ratios=ratios, **TRAIN)

    return Objective(build, prune=False)


def ratios_text(params) -> str:
    return "/".join(f"{params[f'ratio_{n}']:.2f}" for n in AUX)


def summary(values) -> str:
    v = np.asarray(values)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def paired_lines(synthetic: dict, dims: list[int], checks: list[int]) -> list[str]:
    """The regret of :data:`PAIR`'s second sampler minus its first's, paired by seed (the same
    landscape and noise), at each checkpoint: mean, 95 % t-interval, and the seeds where the first
    was lower / tied / higher (> 0: the first is better)."""
    from auxopt.stats import paired_difference

    mine, theirs = PAIR
    lines = [
        f"Paired by seed: regret of {theirs} − regret of {mine} (> 0: {mine} found the better "
        f"point), mean [95 % t-interval], and seeds {mine} was lower / tied / higher.",
        "",
        "| ratios | " + " | ".join(f"@{k} trials" for k in checks) + " |",
        "|---|" + "---|" * len(checks),
    ]
    for d in dims:
        a = [r for r, _ in synthetic[(d, mine)]]
        b = [r for r, _ in synthetic[(d, theirs)]]
        cells = []
        for j in range(len(checks)):
            diff = paired_difference({s: r[j] for s, r in enumerate(b)}, {s: r[j] for s, r in enumerate(a)})
            cells.append(f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] {diff.wins}/{diff.ties}/{diff.losses}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--seeds", type=int, help="synthetic seeds (default: by scale)")
    parser.add_argument("--dims", default="3,5,8", help="numbers of ratios of the landscapes")
    parser.add_argument("--samplers", help=f"comma-separated samplers to compare (default all: {', '.join(SAMPLERS)})")
    parser.add_argument(
        "--real",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run the real-data stage 2 (default: on at --scale cpu)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the whole run")
    parser.add_argument(
        "--workers", type=int, default=1, help="synthetic studies run as this many asynchronous workers"
    )
    parser.add_argument("--write", action="store_true", help=f"write the tables into {_common.RESULTS}")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")

    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    n_seeds = args.seeds or scale["seeds"]
    real = scale["real"] if args.real is None else args.real
    dims = [int(d) for d in args.dims.split(",")]
    factories = samplers()
    if args.samplers:
        chosen = [n for n in args.samplers.split(",") if n]
        for bad in [n for n in chosen if n not in factories]:
            parser.error(f"unknown sampler {bad!r}; choose from {', '.join(SAMPLERS)}")
        factories = {n: factories[n] for n in chosen}
    checks = [k for k in CHECKPOINTS if k <= scale["trials"]]

    synthetic = {}  # (d, sampler) -> list of (regrets at checks, wall)
    for d in dims:
        for seed in range(n_seeds):
            landscape = Landscape(d, seed)
            for name, factory in factories.items():
                study, wall = run_study(factory, seed, landscape, scale["trials"], args.workers)
                regrets = incumbents(study, checks, lambda t: -t.user_attrs["true"])
                synthetic.setdefault((d, name), []).append((regrets, wall))
                shown = " ".join(f"{r:.3f}" for r in regrets)
                print(f"d={d} seed {seed} {name:18s} regret@{checks}: {shown} ({wall:.1f} s)", flush=True)

    lines = [  # the header (date, load average at the end) goes on top when the run is over
        f"- Machine note: torch on {args.threads} thread(s) for the whole run (training and every sampler's GP step).",
        f"- Synthetic setting: d ratios in [{LOW:g}, {HIGH:g}], f(r) = -Σ w_i e_i² - Σ c_i e_i "
        "e_(i+1), e_i = log1p(r_i) - log1p(r*_i), r*_i ~ U(0.5, 4), w_i ~ U(0.5, 2), c_i ~ "
        f"U(-0.4, 0.4) (optimum f(r*) = 0), drawn per (d, seed); observed f + N(0, {SIGMA:g}²), the "
        f"same noise for trial k under every sampler. {scale['trials']} trials a study, "
        f"{n_seeds} seed(s) (sampler seed = landscape seed)"
        + (
            f", run as {args.workers} asynchronous workers (each trial asked while the previous "
            f"{args.workers - 1} are RUNNING, their points pending; told oldest first)"
            if args.workers > 1
            else ""
        )
        + ". **Regret after k trials** = 0 − "
        "noise-free f of the incumbent, the trial with the best *noisy* value among the first k "
        "(lower is better); mean ± sd over seeds. For scale, the mean regret of a uniformly random "
        "r: " + ", ".join(f"{random_regret(d, n_seeds):.2f} (d = {d})" for d in dims) + ".",
        "- Samplers: `MixingRatioSampler(seed=s)` (its default min(10, 2d+1) Sobol points, then the GP); "
        "`GPSampler(seed=s)`, `TPESampler(seed=s)` (univariate), `RandomSampler(seed=s)` at Optuna "
        f"{optuna.__version__}'s defaults: GPSampler and TPESampler sample their first 10 trials at "
        "random, so at k = 10 they are random search.",
        "",
        "| ratios | sampler | " + " | ".join(f"regret @{k}" for k in checks) + " | s / study |",
        "|---|---|" + "---|" * len(checks) + "---|",
    ]
    for d in dims:
        for name in factories:
            runs = synthetic[(d, name)]
            regrets = np.array([r for r, _ in runs])
            cells = " | ".join(summary(regrets[:, j]) for j in range(len(checks)))
            lines.append(f"| {d} | {name} | {cells} | {np.mean([w for _, w in runs]):.1f} |")
    if all(name in factories for name in PAIR):
        lines += ["", *paired_lines(synthetic, dims, checks)]

    if real:
        primary, auxiliaries = real_tasks()
        objective = real_objective(primary, auxiliaries)
        real_checks = [k for k in CHECKPOINTS if k <= scale["real_trials"]]
        from auxopt.train import TrainConfig, train

        references = {}
        for label, ratios in (
            ("TREC alone", {primary.name: 1.0}),
            ("all ratios 1", {t.name: 1.0 for t in [primary, *auxiliaries]}),
        ):
            result = train(TrainConfig(primary, auxiliaries, ratios=ratios, **TRAIN))
            references[label] = (result.best_dev, result.wall_time)
            print(f"real reference {label}: dev {result.best_dev:.4f} ({result.wall_time:.1f} s)", flush=True)
        rows = {}
        for seed in range(scale["real_seeds"]):
            for name, factory in factories.items():
                study, wall = run_study(factory, seed, objective, scale["real_trials"])
                best = incumbents(study, real_checks, lambda t: t.value)
                rows.setdefault(name, []).append((best, wall, study.best_trial.params))
                shown = " ".join(f"{b:.4f}" for b in best)
                print(
                    f"real seed {seed} {name:18s} best dev@{real_checks}: {shown} ({wall:.0f} s) "
                    f"best {ratios_text(study.best_trial.params)}",
                    flush=True,
                )
        trial_s = np.mean([w for runs in rows.values() for _, w, _ in runs]) / scale["real_trials"]
        lines += [
            "",
            f"- Real-data setting: primary `trec` (max_train=600, {len(primary.dev)} dev examples), "
            "auxiliaries `sst2`, `subj` and `mr` (max_train=1500 each); a trial trains "
            f"`TrainConfig(ratios={{trec: 1, aux: suggest_float('ratio_aux', {LOW:g}, {HIGH:g})}}, "
            + ", ".join(f"{k}={v!r}" for k, v in TRAIN.items())
            + ")` through `auxopt.objective.Objective(prune=False)`; value = best TREC dev "
            f"accuracy. {scale['real_trials']} trials a study, {scale['real_seeds']} sampler seed(s) "
            f"(training seed fixed at 0); best dev after k trials, mean ± sd over seeds (higher is "
            f"better); {trial_s:.1f} s a trial on average. References (one run each): "
            + ", ".join(f"{k} {v:.4f}" for k, (v, _) in references.items())
            + ".",
            "",
            "| sampler | "
            + " | ".join(f"best dev @{k}" for k in real_checks)
            + " | best trial's ratios sst2/subj/mr, per seed | s / study |",
            "|---|" + "---|" * len(real_checks) + "---|---|",
        ]
        for name, runs in rows.items():
            best = np.array([b for b, _, _ in runs])
            cells = " | ".join(summary(best[:, j]) for j in range(len(real_checks)))
            found = "; ".join(ratios_text(p) for _, _, p in runs)
            lines.append(f"| {name} | {cells} | {found} | {np.mean([w for _, w, _ in runs]):.0f} |")

    title = TITLE if args.workers == 1 else f"{TITLE} with {args.workers} asynchronous workers"
    _common.publish(title, [*_common.header(title), *lines], args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
