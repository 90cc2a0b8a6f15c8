"""AutoSeM's task schedules in a plain PyTorch loop: a small MLP on scikit-learn's digits (no download).

* ``primary``: classify digits 0–4 from only ``n_per_class`` training images each (data-starved);
* ``helpful``: the parity (odd/even) of other digit images, 0–9 — a coarse label of the same thing;
* ``unrelated``: the same images with random labels (only noise to fit).

Each step trains one minibatch of the task the schedule names (one head per task, one shared trunk).
Three runs per seed, the same number of steps each:

1. **primary alone** (``RoundRobinSchedule({"primary": 1})``);
2. **online Thompson** (AutoSeM stage 1, ``ThompsonSchedule``): the three tasks are bandit arms; a
   pull is ``steps_per_pull`` minibatches of the chosen task, rewarded with
   ``schedule.observe((dev accuracy, dev loss))`` — 1 when the primary's dev accuracy rose (on a tie:
   when its dev loss fell), else 0;
3. **selected, round robin** (AutoSeM stage 2 with ratio 1 each): the primary plus the tasks whose
   utility beat the primary's own arm in run 2 (``schedule.select(baseline="primary")``).

It prints how often the bandit pulled each task, their utilities, which were selected, and the
primary's test accuracy (0–4 images used neither for training nor for the dev reward).

    python examples/autosem_schedule.py            # 10 seeds, about 12 s on one CPU thread
    python examples/autosem_schedule.py --seeds 2 --steps 100
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from auxopt.train.schedules import OnlineThompson, RoundRobinSchedule, ThompsonSchedule

TASKS = ("primary", "helpful", "unrelated")
CONFIGS = ("primary alone", "online Thompson", "selected, round robin")


def load_data(seed: int, n_per_class: int = 5, n_dev: int = 10) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"primary", "dev", "test", "helpful", "unrelated"}`` → (images (n, 64) in [0, 1], labels).
    Per digit 0–4: ``n_per_class`` training images, ``n_dev`` dev images (the bandit's reward),
    half the rest for the test set, half for the auxiliary pool (with every 5–9 image)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    train, dev, test, pool = [], [], [], [torch.nonzero(y >= 5).squeeze(1)]
    for c in range(5):
        index = torch.nonzero(y == c).squeeze(1)
        index = index[torch.randperm(len(index), generator=g)]
        rest = index[n_per_class + n_dev :]
        train.append(index[:n_per_class])
        dev.append(index[n_per_class : n_per_class + n_dev])
        test.append(rest[: len(rest) // 2])
        pool.append(rest[len(rest) // 2 :])
    train, dev, test, pool = (torch.cat(i) for i in (train, dev, test, pool))
    return {
        "primary": (x[train], y[train]),
        "dev": (x[dev], y[dev]),
        "test": (x[test], y[test]),
        "helpful": (x[pool], y[pool] % 2),
        "unrelated": (x[pool], torch.randint(0, 2, (len(pool),), generator=g)),
    }


class Net(nn.Module):
    """A shared trunk (64 → 128 → 64, dropout) and one linear head per task."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 64), nn.ReLU())
        self.heads = nn.ModuleDict(
            {"primary": nn.Linear(64, 5), "helpful": nn.Linear(64, 2), "unrelated": nn.Linear(64, 2)}
        )

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.trunk(x))


@torch.no_grad()
def score(model: Net, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """The primary's (accuracy, loss) on ``data``, in eval mode."""
    model.eval()
    out = model(data[0], "primary")
    model.train()
    return float((out.argmax(1) == data[1]).float().mean()), float(F.cross_entropy(out, data[1]))


def train(data, schedule, seed: int, steps: int = 300, lr: float = 3e-3) -> float:
    """Train ``steps`` minibatches in the order ``schedule`` names their tasks; the primary's test
    accuracy. A schedule that wants feedback (``ThompsonSchedule``) is rewarded after every pull."""
    torch.manual_seed(seed)
    model, g = Net(), torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # -- AutoSeM's schedule in a plain loop: the core of it -----------------------------------------
    loaders = {t: DataLoader(TensorDataset(*data[t]), batch_size=32, shuffle=True, generator=g) for t in TASKS}
    bandit = getattr(schedule, "wants_feedback", False)
    if bandit:
        schedule.observe(score(model, data["dev"]))  # the reference: the untrained model
    for task, (x, y) in itertools.islice(schedule.batches(loaders), steps):  # endless: take `steps`
        loss = F.cross_entropy(model(x, task), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if bandit and schedule.pull_finished():  # every steps_per_pull minibatches
            schedule.observe(score(model, data["dev"]))  # reward 1: dev accuracy rose (tie: loss fell)
    # ------------------------------------------------------------------------------------------------
    return score(model, data["test"])[0]


def main(
    seeds=range(10), steps: int = 300, steps_per_pull: int = 5, n_per_class: int = 5, verbose: bool = True
) -> dict:
    """Runs the three configurations (:data:`CONFIGS`) per seed; returns ``{"accuracy": {config:
    [per seed]}, "pulls": {task: [per seed]}, "utilities": {task: [per seed]}, "selected": [[tasks]
    per seed]}`` and prints a summary."""
    start = time.perf_counter()
    out: dict = {
        "accuracy": {c: [] for c in CONFIGS},
        "pulls": {t: [] for t in TASKS},
        "utilities": {t: [] for t in TASKS},
        "selected": [],
    }
    for seed in seeds:
        data = load_data(seed, n_per_class)
        out["accuracy"][CONFIGS[0]].append(train(data, RoundRobinSchedule({"primary": 1}), seed, steps))
        thompson = ThompsonSchedule(TASKS, OnlineThompson(steps_per_pull=steps_per_pull, gamma=0.3), seed=seed)
        out["accuracy"][CONFIGS[1]].append(train(data, thompson, seed, steps))
        for task, pulls in thompson.bandit.pulls().items():
            out["pulls"][task].append(pulls)
        for task, u in thompson.utilities().items():
            out["utilities"][task].append(u)
        selected = thompson.select(baseline="primary", none_arm="primary")
        out["selected"].append(selected)
        ratios = {"primary": 1, **{t: 1 for t in selected}}
        out["accuracy"][CONFIGS[2]].append(train(data, RoundRobinSchedule(ratios), seed, steps))
    if verbose:
        n = len(out["selected"])
        print(
            f"digits 0-4, {n_per_class} training images a class, {steps} steps, {steps_per_pull} a pull, "
            f"{n} seeds ({time.perf_counter() - start:.1f} s, {torch.get_num_threads()} thread(s))"
        )
        print(f"{'task':<10} {'pulls (mean)':>12} {'utility (mean)':>15} {'selected':>9}")
        for t in TASKS:
            chosen = sum(t in s for s in out["selected"])
            print(
                f"{t:<10} {statistics.mean(out['pulls'][t]):>12.1f} {statistics.mean(out['utilities'][t]):>15.3f} "
                f"{'' if t == 'primary' else f'{chosen}/{n}':>9}"
            )
        print(f"{'configuration':<22} {'test acc (mean ± sd)':>21}   per seed")
        for c, values in out["accuracy"].items():
            sd = statistics.stdev(values) if n > 1 else 0.0
            print(f"{c:<22} {statistics.mean(values):>13.3f} ± {sd:.3f}   " + " ".join(f"{v:.3f}" for v in values))
        print("paired differences vs primary alone (mean ± standard error, wins/ties/seeds):")
        for c in CONFIGS[1:]:
            diffs = [a - b for a, b in zip(out["accuracy"][c], out["accuracy"][CONFIGS[0]], strict=True)]
            se = statistics.stdev(diffs) / n**0.5 if n > 1 else 0.0
            print(
                f"  {c:<22} {statistics.mean(diffs):+.3f} ± {se:.3f}  "
                f"({sum(d > 0 for d in diffs)}/{sum(d == 0 for d in diffs)}/{n})"
            )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--steps-per-pull", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=5, help="primary training images per digit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    main(range(args.seeds), args.steps, args.steps_per_pull, args.per_class)
