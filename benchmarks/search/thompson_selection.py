"""AutoSeM stage 1: how well does Thompson sampling pick the helpful auxiliary tasks?

On the synthetic suite (``make_synthetic_suite``: helpful, neutral and harmful auxiliaries with known
roles), for several seeds:

* **online** — one training run with the online Thompson schedule at a constant learning rate (the
  primary task and every auxiliary are arms; a pull is ``steps_per_pull`` minibatches; reward = primary
  dev rose, a tie decided by the dev loss; the variants in :data:`ONLINE` change the reward or the pull);
* **sampler** — an Optuna study with ``ThompsonTaskSampler`` over ``aux_task`` (``none`` + every
  auxiliary); a trial trains primary + the chosen auxiliary (ratio 1:1); reward = the trial's dev
  accuracy is at least the mean of the primary-only trials;
* **random** — each auxiliary kept with probability 1/2 (expected precision = share of helpful
  tasks, recall = 1/2), the yardstick.

Selected by each rule of :data:`RULES` from the same runs: AutoSeM's default (undecayed win rate
above the median task's, at most 3), the same at most 2 or 1, uncapped (recall can reach 1), against the primary-only
arm (the primary's own arm online, ``none`` for the sampler), and the selection before (the decayed
posterior mean above 0.5). Precision and recall are against the helpful set.

    python benchmarks/search/thompson_selection.py --scale cpu --write

``--simulate H,N,X`` trains nothing: it prints the precision the default rule would reach if helpful,
neutral and harmful tasks won a pull at those rates (the run's role tally measures them), by pulls a
task and by how the pulls are spent (:data:`ALLOCATIONS`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

SCALES = {
    # seeds, online steps, sampler trials, steps per sampler trial
    "ci": dict(seeds=1, online_steps=400, trials=12, trial_steps=60),  # 400: one round after the warm-up
    "cpu": dict(seeds=3, online_steps=1500, trials=40, trial_steps=150),
    "gpu": dict(seeds=5, online_steps=3000, trials=80, trial_steps=300),
}
TITLE = "Thompson task selection (benchmarks/search/thompson_selection.py)"
#: stage-1 lengths, as fractions of the online run, at which the evidence is read again
LENGTHS = (0.2, 0.5, 1.0)
BASE = dict(max_length=32, batch_size=32, eval_batch_size=250, model="tiny")


def precision_recall(selected: list[str], helpful: set[str]) -> tuple[float, float]:
    hits = len(set(selected) & helpful)
    precision = hits / len(selected) if selected else 0.0
    return precision, hits / len(helpful)


#: selection rules, all read from the same runs: (label, function of (evidence, decayed posterior, primary arm))
RULES = {
    "median, top 3 (AutoSeM's default)": lambda ev, post, arm: _select(ev, arm, baseline="median", top_k=3),
    "median, top 2": lambda ev, post, arm: _select(ev, arm, baseline="median", top_k=2),
    "median, top 1": lambda ev, post, arm: _select(ev, arm, baseline="median", top_k=1),
    "median": lambda ev, post, arm: _select(ev, arm, baseline="median"),
    "beats the primary-only arm": lambda ev, post, arm: _select(ev, arm, baseline=arm),
    "decayed mean > 0.5 (the old rule, on these runs)": lambda ev, post, arm: _select(post, arm, threshold=0.5),
}


def _select(posterior, arm, **kwargs):
    from auxopt.samplers import select_tasks

    return select_tasks(posterior, none_arm=arm, **kwargs)


#: the online stage-1 variants: label -> OnlineThompson settings (10 steps a pull unless they say)
ONLINE = {
    "online": dict(eval_batches=2),
    "online (4 dev batches)": dict(eval_batches=4),
    "online (trend reward)": dict(eval_batches=4, reward="trend"),
    "online (20 steps a pull)": dict(eval_batches=2, steps_per_pull=20),
    "online (5 steps a pull)": dict(eval_batches=2, steps_per_pull=5),
    "online (rounds)": dict(eval_batches=2, reward="round"),
}


def run_online(suite, steps: int, seed: int, settings: dict):
    from auxopt.train import OnlineThompson, TrainConfig, train

    config = TrainConfig(
        suite.primary,
        suite.auxiliaries,
        schedule=OnlineThompson(**{"steps_per_pull": 10, **settings}),
        max_steps=steps,
        eval_every=steps,
        seed=seed,
        lr_schedule="constant",
        **BASE,
    )
    start = time.perf_counter()
    result = train(config)
    info, primary = result.extra["thompson"], suite.primary.name
    evidence = {k: tuple(v) for k, v in info["evidence"].items()}
    posterior = {k: tuple(v) for k, v in info["posterior"].items()}
    return time.perf_counter() - start, evidence, posterior, primary, info["history"]


def _falls(history: list[dict]) -> list[tuple[str, float]]:
    """Each pull's task and fall of the primary dev loss since the previous evaluation (the first pull,
    with no previous evaluation in the history, left out)."""
    return [(pull["task"], before["dev_loss"] - pull["dev_loss"]) for before, pull in itertools.pairwise(history)]


def _above_median(score: dict[str, float], primary: str, top_k: int) -> list[str]:
    """The tasks (the primary's own arm apart) whose score beats the median task's, best first, at
    most ``top_k``."""
    score = {t: m for t, m in score.items() if t != primary}
    bar = float(np.median(list(score.values())))
    return sorted((t for t, m in score.items() if m > bar), key=lambda t: -score[t])[:top_k]


LOSS_RULE = "mean dev-loss change below the median task's, top 3"


def loss_selection(history: list[dict], primary: str, top_k: int = 3) -> list[str]:
    """A continuous reading of the same pulls: each task's mean fall of the primary dev loss over its
    pulls; kept: the tasks whose mean fall beats the median task's, the best ``top_k``."""
    falls: dict[str, list[float]] = {}
    for task, fall in _falls(history):
        falls.setdefault(task, []).append(fall)
    return _above_median({t: float(np.mean(v)) for t, v in falls.items()}, primary, top_k)


RANK_RULE = "mean rank of the dev-loss change among the 20 nearest pulls, above the median task's, top 3"


def rank_selection(history: list[dict], primary: str, top_k: int = 3, window: int = 20) -> list[str]:
    """A trend-free, tail-robust reading of the same pulls: each pull's fall of the primary dev loss
    ranked among the ``window`` pulls nearest in time (0: the smallest fall, 1: the largest), averaged
    per task; kept: the tasks whose mean rank beats the median task's, the best ``top_k``."""
    changes = _falls(history)
    falls = np.array([c for _, c in changes])
    ranks: dict[str, list[float]] = {}
    for i, (task, fall) in enumerate(changes):
        lo = max(0, min(i - window // 2, len(changes) - window - 1))
        near = np.delete(falls[lo : lo + window + 1], i - lo) if len(changes) > 1 else falls
        ranks.setdefault(task, []).append(float(np.mean(near < fall) + 0.5 * np.mean(near == fall)))
    return _above_median({t: float(np.mean(v)) for t, v in ranks.items()}, primary, top_k)


def evidence_until(history: list[dict], arms, steps: int) -> dict[str, tuple[float, float]]:
    """The undecayed evidence (Beta(1, 1) + wins, + losses) of the pulls that ended by ``steps``: what
    a stage 1 of that length would have selected on (the pulls before are the same)."""
    tally = {arm: [1.0, 1.0] for arm in arms}
    for pull in history:
        if pull["step"] <= steps:
            tally[pull["task"]][0 if pull["reward"] else 1] += 1
    return {arm: (a, b) for arm, (a, b) in tally.items()}


ROLES = ("helpful", "neutral", "harmful")
COUNTS = {"helpful": 4, "neutral": 3, "harmful": 3}  # the synthetic suite's candidates by role


def win_rate(tally: dict[tuple[str, int], list[int]], role: str, halves=(0, 1)) -> float:
    wins, pulls = (sum(tally.get((role, h), [0, 0])[i] for h in halves) for i in (0, 1))
    return wins / pulls if pulls else float("nan")


def role_tally(history: list[dict], suite, steps: int) -> dict[tuple[str, int], list[int]]:
    """Wins and pulls of the online run's pulls by the pulled task's role (the primary's own arm
    apart) and by half of the run (0: the pulls that ended in its first half)."""
    role = {name: r for r in ROLES for name in suite.names(r)}
    tally: dict[tuple[str, int], list[int]] = {}
    for pull in history:
        cell = tally.setdefault((role.get(pull["task"], "primary"), int(pull["step"] > steps / 2)), [0, 0])
        cell[0] += pull["reward"]
        cell[1] += 1
    return tally


#: how a simulated stage 1 spends its pulls: each task the same number (what the online run's decayed
#: Thompson sampling nearly does), Thompson sampling with AutoSeM's decay γ = 0.3, or pulls spent on the
#: boundary of the kept set (LUCB-style: the kept task with the lowest lower bound or the dropped one
#: with the highest upper bound, whichever has fewer pulls, after 3 pulls each)
ALLOCATIONS = ("uniform", "thompson", "boundary")
SIMULATED_PULLS = (8, 13, 16, 20, 32, 64)


def _allocate(p: np.ndarray, budget: int, allocation: str, rng: np.random.Generator):
    """Wins and pulls, ``(draws, tasks)``, of ``budget`` pulls spent by ``allocation`` on tasks that win
    with probabilities ``p`` (``(draws, tasks)``)."""
    draws, k = p.shape
    if allocation == "uniform":
        n = np.full(k, budget // k) + (np.arange(k) < budget % k)
        return rng.binomial(n, p), np.broadcast_to(n, p.shape).astype(float)
    wins, pulls, rows = np.zeros(p.shape), np.zeros(p.shape), np.arange(draws)
    a, b = np.ones(p.shape), np.ones(p.shape)
    for step in range(budget):
        if allocation == "thompson":
            arm = np.argmax(rng.beta(a, b), axis=1)
        elif step < 3 * k:
            arm = np.full(draws, step % k)
        else:
            mean = (wins + 1) / (pulls + 2)
            spread = np.sqrt(mean * (1 - mean) / (pulls + 2))
            order = np.argsort(-mean, axis=1)
            kept, dropped = order[:, :3], order[:, 3:]
            low = np.take_along_axis(kept, np.argmin(np.take_along_axis(mean - spread, kept, 1), 1)[:, None], 1)[:, 0]
            high = np.take_along_axis(dropped, np.argmax(np.take_along_axis(mean + spread, dropped, 1), 1)[:, None], 1)[
                :, 0
            ]
            arm = np.where(pulls[rows, low] <= pulls[rows, high], low, high)
        won = rng.random(draws) < p[rows, arm]
        a, b = 1 + 0.7 * (a - 1), 1 + 0.7 * (b - 1)  # AutoSeM's decay (read by "thompson" only)
        a[rows, arm] += won
        b[rows, arm] += ~won
        wins[rows, arm] += won
        pulls[rows, arm] += 1
    return wins, pulls


def expected_precision(
    rates: dict[str, float], counts: dict[str, int], pulls: int, draws: int = 20000, allocation: str = "uniform"
) -> float:
    """The precision AutoSeM's default rule (top 3 above the median task) would reach if every task
    of each role won a pull with that role's rate, over ``pulls`` pulls a task on average spent as
    ``allocation`` says (:data:`ALLOCATIONS`; binomial simulation)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, not {allocation!r}")
    rng = np.random.default_rng(0)
    roles = np.array([r for r in ROLES for _ in range(counts[r])])
    p = np.broadcast_to([rates[r] for r in roles], (draws, len(roles)))
    wins, n = _allocate(p, pulls * len(roles), allocation, rng)
    u = (wins + 1) / (n + 2) + rng.uniform(0, 1e-9, p.shape)  # ties broken at random
    above = u > np.median(u, axis=1, keepdims=True)
    order = np.argsort(-u, axis=1)[:, :3]
    kept = np.take_along_axis(above, order, 1)
    helpful = (roles[order] == "helpful") & kept
    shares = np.where(kept.any(1), helpful.sum(1) / np.maximum(kept.sum(1), 1), 0.0)
    return float(shares.mean())


def run_sampler(suite, trials: int, steps: int, seed: int):
    import optuna

    from auxopt.objective import Objective
    from auxopt.samplers import ThompsonTaskSampler
    from auxopt.train import TrainConfig

    names = [t.name for t in suite.auxiliaries]

    def build(trial):
        aux = trial.suggest_categorical("aux_task", ["none", *names])
        ratios = {suite.primary.name: 1} if aux == "none" else {suite.primary.name: 1, aux: 1}
        return TrainConfig(
            suite.primary, suite.auxiliaries, ratios=ratios, max_steps=steps, eval_every=steps, seed=seed, **BASE
        )

    sampler = ThompsonTaskSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"aux_task": "none"})  # a primary-only reference for the baseline reward
    start = time.perf_counter()
    study.optimize(Objective(build, prune=False), n_trials=trials)
    wall = time.perf_counter() - start
    sooner = {}  # the evidence of the first k trials, replayed in a copy of the study that holds only them
    for fraction in LENGTHS:
        k = max(1, int(trials * fraction))
        first = sorted(study.trials, key=lambda t: t.number)[:k]
        early = optuna.create_study(direction="maximize")
        early.add_trials(first)
        # steps really trained: a trial that repeats a finished run's settings reuses its outcome (0 steps)
        sooner[fraction] = (sum(t.user_attrs.get("steps", 0) for t in first), sampler.evidence(early))
    return wall, sampler.evidence(study), sampler.posterior(study), "none", sooner


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--seeds", type=int, help="seeds (default: by scale)")
    parser.add_argument(
        "--methods",
        default=",".join([*ONLINE, "sampler"]),
        help=f"comma-separated stage-1 variants (default all: {', '.join([*ONLINE, 'sampler'])})",
    )
    parser.add_argument("--online-steps", type=int, help="steps of the online stage-1 run (default: by scale)")
    parser.add_argument("--write", action="store_true", help=f"write the table into {_common.RESULTS}")
    parser.add_argument(
        "--simulate",
        metavar="H,N,X",
        help="no training: print the precision the default rule would reach if helpful, neutral and harmful "
        "tasks won a pull at these rates, by pulls a task and allocation (e.g. 0.59,0.46,0.33)",
    )
    _common.add_threads_option(parser)
    args = parser.parse_args(argv)
    _common.apply_threads(args)
    if args.simulate:
        try:
            rates = dict(zip(ROLES, (float(x) for x in args.simulate.split(",")), strict=True))
        except ValueError:
            parser.error(f"--simulate takes three win rates, helpful,neutral,harmful, not {args.simulate!r}")
        if not all(0 <= r <= 1 for r in rates.values()):
            parser.error(f"--simulate: win rates are probabilities in [0, 1], not {args.simulate!r}")
        print("| pulls a task | " + " | ".join(ALLOCATIONS) + " |\n|---|" + "---|" * len(ALLOCATIONS))
        for n in SIMULATED_PULLS:
            cells = [f"{expected_precision(rates, COUNTS, n, draws=4000, allocation=a):.3f}" for a in ALLOCATIONS]
            print(f"| {n} | " + " | ".join(cells) + " |")
        return 0
    methods = [m for m in args.methods.split(",") if m]
    for bad in [m for m in methods if m not in ONLINE and m != "sampler"]:
        parser.error(f"unknown method {bad!r}; choose from {', '.join([*ONLINE, 'sampler'])}")

    import optuna

    from auxopt.tasks import make_synthetic_suite

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scale = dict(SCALES[args.scale])
    if args.online_steps:
        scale["online_steps"] = args.online_steps
    readings = [LOSS_RULE, RANK_RULE]

    def reads(m):  # the readings of a pull's fall since the previous pull: not of pulls judged in rounds
        return m in ONLINE and ONLINE[m].get("reward") != "round"

    rows = {f"{m}: {rule}": [] for m in methods for rule in [*RULES, *(readings if reads(m) else [])]}
    rows["random"] = []
    by_length: dict[tuple[str, float], list[tuple[float, float]]] = {}  # (method, fraction) -> [(P, R)]
    length_steps: dict[tuple[str, float], int] = {}  # (method, fraction) -> stage-1 steps
    tallies: dict[str, dict[tuple[str, int], list[int]]] = {}  # online method -> (role, half) -> [wins, pulls]
    rng = np.random.default_rng(0)
    n_seeds = args.seeds or scale["seeds"]
    for seed in range(n_seeds):
        suite = make_synthetic_suite(**{f"n_{r}": n for r, n in COUNTS.items()}, seed=seed)
        helpful = set(suite.names("helpful"))
        for method in methods:
            if method in ONLINE:
                wall, evidence, posterior, arm, history = run_online(suite, scale["online_steps"], seed, ONLINE[method])
                for key, (w, n) in role_tally(history, suite, scale["online_steps"]).items():
                    cell = tallies.setdefault(method, {}).setdefault(key, [0, 0])
                    cell[0], cell[1] = cell[0] + w, cell[1] + n
                for rule, select in ((LOSS_RULE, loss_selection), (RANK_RULE, rank_selection)) if reads(method) else ():
                    selected = select(history, arm)
                    p, r = precision_recall(selected, helpful)
                    rows[f"{method}: {rule}"].append((p, r, len(selected), wall))
                    print(f"seed {seed} {method} {rule}: P={p:.2f} R={r:.2f} selected={sorted(selected)}", flush=True)
                for fraction in LENGTHS:
                    steps = length_steps[(method, fraction)] = int(scale["online_steps"] * fraction)
                    selected = _select(evidence_until(history, evidence, steps), arm, baseline="median", top_k=3)
                    by_length.setdefault((method, fraction), []).append(precision_recall(selected, helpful))
            else:
                wall, evidence, posterior, arm, sooner = run_sampler(suite, scale["trials"], scale["trial_steps"], seed)
                for fraction, (steps, early) in sooner.items():
                    length_steps[(method, fraction)] = steps
                    selected = _select(early, arm, baseline="median", top_k=3)
                    by_length.setdefault((method, fraction), []).append(precision_recall(selected, helpful))
            for rule, select in RULES.items():
                selected = select(evidence, posterior, arm)
                p, r = precision_recall(selected, helpful)
                rows[f"{method}: {rule}"].append((p, r, len(selected), wall))
                print(f"seed {seed} {method} {rule}: P={p:.2f} R={r:.2f} selected={sorted(selected)}", flush=True)
            rates = {k: f"{a - 1:.0f}/{a + b - 2:.0f}" for k, (a, b) in evidence.items()}
            print(f"seed {seed} {method} {wall:.0f}s wins/pulls={rates}", flush=True)
        for _ in range(200):
            names = [t.name for t in suite.auxiliaries]
            selected = [n for n in names if rng.random() < 0.5]
            p, r = precision_recall(selected, helpful)
            rows["random"].append((p, r, len(selected), 0.0))

    lines = [
        *_common.header(TITLE),
        f"- Setting: synthetic suite with 10 candidates (4 helpful, 3 neutral, 3 harmful), tiny model, "
        f"{n_seeds} seed(s); online: one run of {scale['online_steps']} steps, 10 steps a pull, "
        "reward on 2 dev batches (AutoSeM's: the dev accuracy rose, a tie decided by the dev loss), or "
        "on 4 (the library's default), or the trend reward on 4 (the dev loss fell by more than the "
        f"median change of the previous 20 pulls), or 20 or 5 steps a pull, or judged in rounds (every "
        "auxiliary one pull from the same saved state, the better half of the round winning, after 2 "
        "warm-up pulls of every task); sampler: "
        f"{scale['trials']} trials of {scale['trial_steps']} steps "
        "(the first primary-only); each selection rule reads the same runs: the undecayed evidence "
        "(wins/pulls) against the median task or the primary-only arm, or the decayed posterior mean "
        "(the selection before); random: each candidate kept with probability 1/2 (200 draws a seed).",
        "",
        "| method | precision (mean ± sd) | recall (mean ± sd) | tasks selected | wall time per seed |",
        "|---|---|---|---|---|",
    ]
    for method, values in rows.items():
        v = np.array(values)
        wall = "–" if method == "random" else f"{v[:, 3].mean():.0f} s"
        lines.append(
            f"| {method} | {v[:, 0].mean():.2f} ± {v[:, 0].std():.2f} | {v[:, 1].mean():.2f} ± {v[:, 1].std():.2f} "
            f"| {v[:, 2].mean():.1f} | {wall} |"
        )
    if by_length:
        lines += [
            "",
            "Selection against stage 1's length (AutoSeM's default rule on the evidence of the pulls that "
            "ended by then, or of the sampler's first trials, from the same runs): precision / recall, mean "
            "over seeds, at the stage-1 training steps shown.",
            "",
            "| method | " + " | ".join(f"{f:.0%} of stage 1" for f in LENGTHS) + " |",
            "|---|" + "---|" * len(LENGTHS),
        ]
        for method in methods:
            cells = [(np.mean(by_length[(method, f)], axis=0), length_steps[(method, f)]) for f in LENGTHS]
            lines.append(f"| {method} | " + " | ".join(f"{p:.2f} / {r:.2f} ({n} steps)" for (p, r), n in cells) + " |")
    if tallies:
        lines += [
            "",
            "Why: how often a pull won, by the pulled task's role, over the pulls of every seed (first half "
            "of the run / second half / all), and the precision AutoSeM's default rule would reach if every "
            "task won at its role's rate (all pulls) with n pulls each (binomial simulation).",
            "",
            "| method | primary's own arm | helpful | neutral | harmful | pulls per task | "
            + " | ".join(f"n = {n}" for n in (8, 16, 32, 64))
            + " |",
            "|---|---|---|---|---|---|" + "---|" * 4,
        ]
        for method, tally in tallies.items():
            cells = [
                " / ".join(f"{win_rate(tally, r, h):.2f}" for h in ((0,), (1,), (0, 1))) for r in ("primary", *ROLES)
            ]
            pulls = sum(tally.get((r, h), [0, 0])[1] for r in ROLES for h in (0, 1)) / (sum(COUNTS.values()) * n_seeds)
            rates = {r: win_rate(tally, r) for r in ROLES}
            sims = [f"{expected_precision(rates, COUNTS, n):.2f}" for n in (8, 16, 32, 64)]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {pulls:.1f} | " + " | ".join(sims) + " |")
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
