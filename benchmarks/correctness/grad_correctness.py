"""Does the randomised primary subspace match the exact one? ``randomized_basis`` (torch.func vjp/jvp,
oversampling, power iterations) against a float64 reference: the exact per-example Jacobian
(``torch.func.jacrev``) and its exact SVD, on a small BERT encoder with a trec (or synthetic) head.

Reported per (k, q): the largest and mean principal angle between the randomised and the exact
top-k right-singular subspaces, the largest relative error of the k singular values, and Halko's
error ratio ‖J − J VᵀV‖₂ / σ_{k+1} (1 is optimal: the best rank-k approximation). The randomised basis
runs in float64 (the algorithm) and in float32 (what training uses).

    AUXOPT_DATA=../shared/data python benchmarks/correctness/grad_correctness.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "ATTITTUD subspace correctness (benchmarks/correctness/grad_correctness.py)"
SCALES = {
    "ci": dict(m=24, ks=[2, 5], qs=[0, 1], seeds=1, hidden=16, layers=1, length=16),
    "cpu": dict(m=32, ks=[2, 5, 10], qs=[0, 1, 2], seeds=3, hidden=32, layers=2, length=24),
    "gpu": dict(m=64, ks=[5, 10, 20], qs=[0, 1, 2], seeds=3, hidden=64, layers=2, length=32),
}


def setup(scale: dict, seed: int):
    import copy

    import torch

    from auxopt.models import MultiTaskModel, TinyBertSpec, encode_split, load_encoder
    from auxopt.tasks import make_synthetic_suite

    if os.environ.get("AUXOPT_DATA"):
        from auxopt import load_task

        task = load_task("trec")
    else:
        task = make_synthetic_suite(n_helpful=0, n_neutral=0, n_harmful=0).primary
    spec = TinyBertSpec(
        hidden_size=scale["hidden"],
        num_layers=scale["layers"],
        num_heads=2,
        intermediate_size=2 * scale["hidden"],
        vocab_size=500,
    )
    loaded = load_encoder("tiny", corpus=task.train.texts, seed=seed, tiny=spec)
    loaded.model.config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = MultiTaskModel(loaded.model, loaded.hidden_size, [task]).double().eval()
    encoded = encode_split(loaded.tokenizer, task, "train", scale["length"])
    index = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed))[: scale["m"]]
    inputs = encoded.batch(index)
    labels = torch.as_tensor(task.train.labels)[index]
    params = {n: p.detach() for n, p in model.named_parameters() if n.startswith("encoder.")}

    model32 = copy.deepcopy(model).float()

    def make_losses(net):
        def losses(ps):
            logits = torch.func.functional_call(net, ps, args=(task.head_name,), kwargs=inputs)
            return torch.nn.functional.cross_entropy(logits, labels, reduction="none")

        return losses

    return task, {torch.float64: make_losses(model), torch.float32: make_losses(model32)}, params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]

    import torch

    from auxopt.grad import exact_basis, principal_angles, randomized_basis

    rows, dims, task_name = [], set(), ""
    for seed in range(scale["seeds"]):
        task, fns, params = setup(scale, seed)
        losses = fns[torch.float64]
        task_name = task.name
        with torch.no_grad():
            start = time.perf_counter()
            jac = torch.func.jacrev(losses)(params)
            jac = torch.cat([j.reshape(scale["m"], -1) for j in jac.values()], dim=1)
            exact_seconds = time.perf_counter() - start
            dims.add(jac.shape[1])
            exact, s_exact = exact_basis(jac, max(scale["ks"]) + 1)
            for k in scale["ks"]:
                for q in scale["qs"]:
                    for dtype in (torch.float64, torch.float32):
                        p32 = {n: t.to(dtype) for n, t in params.items()}
                        fn = fns[dtype]
                        start = time.perf_counter()
                        v, s = randomized_basis(
                            fn, p32, k, oversample=5, power_iters=q, generator=torch.Generator().manual_seed(seed)
                        )
                        seconds = time.perf_counter() - start
                        v = v.double()
                        angles = principal_angles(v, exact[:k])
                        resid = torch.linalg.matrix_norm(jac - (jac @ v.T) @ v, ord=2) / s_exact[k]
                        rows.append(
                            dict(
                                seed=seed,
                                k=k,
                                q=q,
                                dtype=str(dtype).replace("torch.", ""),
                                gap=float(s_exact[k - 1] / s_exact[k]),
                                max_deg=math.degrees(float(angles.max())),
                                mean_deg=math.degrees(float(angles.mean())),
                                sv_err=float(((s.double() - s_exact[:k]).abs() / s_exact[:k]).max()),
                                resid=float(resid),
                                seconds=seconds,
                                exact_seconds=exact_seconds,
                            )
                        )
                        print(rows[-1], flush=True)

    import statistics

    lines = [
        *_common.header(TITLE),
        f"- Setting: primary task {task_name}; tiny BERT (hidden {scale['hidden']}, {scale['layers']} "
        f"layer(s), vocab 500) in float64, dropout off, eager attention; D = {sorted(dims)} encoder "
        f"parameters; m = {scale['m']} examples of length {scale['length']}; oversample p = 5; "
        f"{scale['seeds']} seed(s) (model init, examples and sketch); medians over seeds.",
        "- Reference: exact m × D Jacobian (torch.func.jacrev) and exact SVD in float64. Angles are "
        "principal angles between the k-dimensional subspaces; gap = σ_k / σ_{k+1} of the exact spectrum "
        "(a small gap makes the k-th singular vector ill-determined for any method).",
        "",
        "| k | q (power iters) | dtype | gap σ_k/σ_k+1 | max angle (°) | mean angle (°) | max rel. error of σ "
        "| ‖J − J VᵀV‖ / σ_k+1 | seconds (randomised) | seconds (exact Jacobian) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["k"], r["q"], r["dtype"]) for r in rows}, key=lambda t: (t[0], t[1], t[2] != "float64"))
    for k, q, dtype in keys:
        sel = [r for r in rows if (r["k"], r["q"], r["dtype"]) == (k, q, dtype)]

        def med(key, sel=sel):
            return statistics.median(r[key] for r in sel)

        lines.append(
            f"| {k} | {q} | {dtype} | {med('gap'):.2f} | {med('max_deg'):.3g} | {med('mean_deg'):.3g} | "
            f"{med('sv_err'):.2e} | {med('resid'):.3f} | {med('seconds'):.3f} | {med('exact_seconds'):.3f} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
