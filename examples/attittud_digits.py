"""ATTITTUD in a plain PyTorch loop: a small MLP on scikit-learn's digits (8 × 8 images, no download).

* primary: classify digits 0–4 from only ``n_per_class`` training images each (data-starved);
* helpful auxiliary: the parity (odd/even) of other digit images, 0–9, plenty of them, on the same
  trunk (a coarse label of the same kind of thing);
* unrelated auxiliary: the same auxiliary images with random labels (only noise to fit).

Each configuration trains the same network from the same seed for the same number of steps and
reports the primary's test accuracy (every 0–4 image not used for training), over several seeds:
primary alone, primary + auxiliary as a plain sum of losses, and primary + auxiliary under
ATTITTUD (``auxopt.grad.Attittud``, η = (η⊥, η+, η−) = (1, 1, −1)), then the paired differences.

    python examples/attittud_digits.py            # 10 seeds, about 30 s on one CPU thread
    python examples/attittud_digits.py --seeds 2 --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from auxopt.grad import Attittud

CONFIGS = ("primary alone", "+ helpful (sum)", "+ helpful (ATTITTUD)", "+ unrelated (sum)", "+ unrelated (ATTITTUD)")


def load_data(seed: int, n_per_class: int = 5) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"primary", "test", "helpful", "unrelated"}`` → (images (n, 64) in [0, 1], labels).

    The 0–4 images are split three ways: ``n_per_class`` a digit for the primary's training set, and
    the rest half into the test set, half into the auxiliary pool (with all 5–9 images). The
    auxiliary pool is labelled by parity (helpful: a coarse version of the digit) or at random
    (unrelated: the same images, labels that mean nothing)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    train, test, pool = [], [], [torch.nonzero(y >= 5).squeeze(1)]
    for c in range(5):
        index = torch.nonzero(y == c).squeeze(1)
        index = index[torch.randperm(len(index), generator=g)]
        rest = index[n_per_class:]
        train.append(index[:n_per_class])
        test.append(rest[: len(rest) // 2])
        pool.append(rest[len(rest) // 2 :])
    train, test, pool = torch.cat(train), torch.cat(test), torch.cat(pool)
    return {
        "primary": (x[train], y[train]),
        "test": (x[test], y[test]),
        "helpful": (x[pool], y[pool] % 2),
        "unrelated": (x[pool], torch.randint(0, 2, (len(pool),), generator=g)),
    }


class Net(nn.Module):
    """A shared trunk (64 → 128 → 64, dropout) and one linear head per task."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 64), nn.ReLU())
        self.heads = nn.ModuleDict({"primary": nn.Linear(64, 5), "aux": nn.Linear(64, 2)})

    def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:
        return self.heads[head](self.trunk(x))


def batch_of(data: tuple[torch.Tensor, torch.Tensor], size: int, g: torch.Generator):
    index = torch.randint(0, len(data[1]), (size,), generator=g)
    return data[0][index], data[1][index]


def train(
    data,
    aux: str | None,
    attittud: bool,
    seed: int,
    steps: int = 300,
    lr: float = 3e-3,
    eta=(1.0, 1.0, -1.0),
    k: int = 5,
    every: int = 10,
    on_step=None,
) -> tuple[Net, float]:
    """Train one configuration; returns the model and the primary's test accuracy.
    ``on_step(model, method)``, if given, runs after each backward pass (tests look at ``.grad``)."""
    torch.manual_seed(seed)
    model, g = Net(), torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # -- ATTITTUD in a plain loop: the core of it --------------------------------------------------
    method = Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=k, every=every, eta=eta, seed=seed)

    def per_example_loss(params, batch):  # params: {"trunk.0.weight": ..., ...}; one loss per example
        x, y = batch
        return F.cross_entropy(functional_call(model, params, (x, "primary")), y, reduction="none")

    for _ in range(steps):
        x_p, y_p = batch_of(data["primary"], 32, g)
        loss_p = F.cross_entropy(model(x_p, "primary"), y_p)
        optimizer.zero_grad()
        if aux is None:
            loss_p.backward()
        else:
            x_a, y_a = batch_of(data[aux], 32, g)
            loss_a = F.cross_entropy(model(x_a, "aux"), y_a)
            if not attittud:
                (loss_p + loss_a).backward()
            else:
                if method.due():  # the first step, then every `every` steps: m = all primary examples
                    method.refresh(per_example_loss, data["primary"], module=model)
                method.backward(loss_p, loss_a)  # g_prim + η⊥g⊥ + η+g+ + η−g− in the trunk's .grad
        if on_step is not None:
            on_step(model, method)
        optimizer.step()
    # ----------------------------------------------------------------------------------------------
    model.eval()
    with torch.no_grad():
        x_t, y_t = data["test"]
        accuracy = float((model(x_t, "primary").argmax(1) == y_t).float().mean())
    return model, accuracy


def main(seeds=range(10), steps: int = 300, n_per_class: int = 5, verbose: bool = True) -> dict[str, list[float]]:
    """Test accuracy per configuration (:data:`CONFIGS`), one entry per seed; prints a table."""
    start = time.perf_counter()
    results: dict[str, list[float]] = {name: [] for name in CONFIGS}
    settings = dict(
        zip(
            CONFIGS,
            [(None, False), ("helpful", False), ("helpful", True), ("unrelated", False), ("unrelated", True)],
            strict=True,
        )
    )
    for seed in seeds:
        data = load_data(seed, n_per_class)
        for name, (aux, decomposed) in settings.items():
            results[name].append(train(data, aux, decomposed, seed, steps=steps)[1])
    if verbose:
        n = len(results[CONFIGS[0]])
        print(
            f"digits 0-4, {n_per_class} training images a class, {steps} steps, {n} seeds "
            f"({time.perf_counter() - start:.1f} s, {torch.get_num_threads()} thread(s))"
        )
        print(f"{'configuration':<24} {'test acc (mean ± sd)':>21}   per seed")
        for name, values in results.items():
            sd = statistics.stdev(values) if n > 1 else 0.0
            print(f"{name:<24} {statistics.mean(values):>13.3f} ± {sd:.3f}   " + " ".join(f"{v:.3f}" for v in values))
        print("paired differences (mean ± standard error, wins/seeds):")
        for a, b in (
            (CONFIGS[1], CONFIGS[0]),
            (CONFIGS[2], CONFIGS[0]),
            (CONFIGS[2], CONFIGS[1]),
            (CONFIGS[3], CONFIGS[0]),
            (CONFIGS[4], CONFIGS[0]),
            (CONFIGS[4], CONFIGS[3]),
        ):
            diffs = [x - y for x, y in zip(results[a], results[b], strict=True)]
            se = statistics.stdev(diffs) / n**0.5 if n > 1 else 0.0
            print(f"  {a:<24} − {b:<20} {statistics.mean(diffs):+.3f} ± {se:.3f}  ({sum(d > 0 for d in diffs)}/{n})")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--per-class", type=int, default=5, help="primary training images per digit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    main(range(args.seeds), args.steps, args.per_class)
