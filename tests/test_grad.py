"""ATTITTUD (auxopt.grad): decomposition algebra, Theorem 1 on a quadratic, randomised vs exact basis,
the trainer plugin, its records, checkpoints and bad input."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from auxopt.errors import AuxoptError
from auxopt.grad import (
    ATTITTUD_PRESETS,
    DEFAULT_ETA,
    DEFAULT_PARAMS,
    GradientDecomposer,
    combine,
    decompose,
    exact_basis,
    primary_grad_basis,
    principal_angles,
    randomized_basis,
)
from auxopt.grad.modes import vmap_safe_masks
from auxopt.grad.subspace import flatten, is_orthonormal, per_example_basis, per_example_jacobian


def random_basis(k: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, k, generator=g, dtype=torch.float64))
    return q.T.contiguous()


# -- decomposition ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_parts_sum_to_g_aux_and_perp_is_orthogonal(seed):
    g = torch.Generator().manual_seed(100 + seed)
    basis = random_basis(4, 50, seed)
    g_aux = torch.randn(50, generator=g, dtype=torch.float64)
    g_prim = torch.randn(50, generator=g, dtype=torch.float64)
    parts = decompose(g_aux, basis, g_prim)
    torch.testing.assert_close(parts.pos + parts.neg + parts.perp, g_aux)
    assert basis @ parts.perp == pytest.approx(torch.zeros(4), abs=1e-12)
    # + and − live in the span and are orthogonal to each other (disjoint coordinates)
    torch.testing.assert_close(basis.T @ (basis @ parts.pos), parts.pos)
    assert float(parts.pos @ parts.neg) == pytest.approx(0.0, abs=1e-12)
    # every coordinate of + agrees in sign with the primary's, every one of − does not
    c_pos, c_neg = basis @ parts.pos, basis @ parts.neg
    p = basis @ g_prim
    assert torch.all(c_pos * p >= -1e-12) and torch.all(c_neg * p <= 1e-12)
    assert torch.all((c_pos.abs() < 1e-12) | (c_neg.abs() < 1e-12))
    c = basis @ g_aux
    assert 0 < int(((c * p) > 0).sum()) < 4  # this draw has both kinds of coordinate


@pytest.mark.parametrize("eta", [(1.0, 1.0, 0.0), (0.0, 1.0, 0.0), (0.3, 0.7, -0.2), (1.0, 1.0, 1.0), (1.0, 1.0, -1.0)])
def test_recombine_equals_combine_of_decompose(eta):
    from auxopt.grad.project import part_norms, recombine, recombine_

    g = torch.Generator().manual_seed(7)
    basis = random_basis(5, 80, 3)
    g_aux = torch.randn(80, generator=g, dtype=torch.float64)
    g_prim = torch.randn(80, generator=g, dtype=torch.float64)
    parts = decompose(g_aux, basis, g_prim)
    direction, c, p = recombine(g_aux, basis, g_prim, eta)
    torch.testing.assert_close(direction, combine(parts, eta))
    torch.testing.assert_close(c, parts.aux_coords)
    torch.testing.assert_close(p, parts.prim_coords)
    norms = part_norms(g_aux, basis, c, p)
    assert norms == pytest.approx(parts.norms(), rel=1e-12)
    assert 0 < norms["pos"] and 0 < norms["neg"]  # both kinds of coordinate in this draw
    # the trainer's in-place path on a 2 × D pair (row 0 g_prim, row 1 g_aux), with and without coords
    for coords in (None, torch.stack([g_prim, g_aux]) @ basis.T):
        pair = torch.stack([g_prim, g_aux])
        c_, p_ = recombine_(pair, basis, eta, coords)
        torch.testing.assert_close(pair[1], combine(parts, eta))
        torch.testing.assert_close(pair[0], g_prim)
        torch.testing.assert_close((c_, p_), (c, p))


def test_signs_on_a_hand_made_case():
    basis = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    g_prim = torch.tensor([1.0, -1.0, 9.0, 9.0])  # primary coordinates (+1, −1)
    g_aux = torch.tensor([2.0, 3.0, 5.0, 7.0])  # aux coordinates (2, 3): agrees on e1, conflicts on e2
    parts = decompose(g_aux, basis, g_prim)
    assert parts.pos.tolist() == [2.0, 0.0, 0.0, 0.0]
    assert parts.neg.tolist() == [0.0, 3.0, 0.0, 0.0]
    assert parts.perp.tolist() == [0.0, 0.0, 5.0, 7.0]
    assert combine(parts, (0.5, 2.0, -1.0)).tolist() == [4.0, -3.0, 2.5, 3.5]
    assert combine(parts, "drop_conflicts").tolist() == [2.0, 0.0, 5.0, 7.0]
    assert combine(parts, "helpful_only").tolist() == [2.0, 0.0, 0.0, 0.0]
    assert combine(parts, "multitask").tolist() == g_aux.tolist()
    assert combine(parts, "flip_conflicts").tolist() == [2.0, -3.0, 5.0, 7.0]  # the conflict, flipped
    assert combine(parts).tolist() == [2.0, -3.0, 5.0, 7.0]  # the default is the official (1, 1, −1)


def test_defaults_are_the_official_run_settings():
    """ldery/ATTITTUD's run command: -num-pca-basis 10 -pca-every 10 -pca-nsamples 64
    -proj_lambda "(1.0, 1.0, -1.0)"; word embeddings left out of the basis."""
    import dataclasses

    import optuna

    spec = GradientDecomposer()
    assert (spec.k, spec.every, spec.m) == (10, 10, 64)
    assert spec.eta == DEFAULT_ETA == (1.0, 1.0, -1.0)
    assert spec.params == DEFAULT_PARAMS == ("encoder", "!*word_embeddings*")
    assert (spec.eta_prim, spec.method) == (1.0, "auto")
    assert ATTITTUD_PRESETS["flip_conflicts"] == ((1.0, 1.0, -1.0), "subspace")
    assert ATTITTUD_PRESETS["drop_conflicts"] == ((1.0, 1.0, 0.0), "subspace")  # the earlier presets are kept
    assert ATTITTUD_PRESETS["multitask"][0] == (1.0, 1.0, 1.0) and ATTITTUD_PRESETS["helpful_only"][0] == (
        0.0,
        1.0,
        0.0,
    )
    assert ATTITTUD_PRESETS["pcgrad"] == ((1.0, 1.0, 0.0), "primary_grad")
    flip = GradientDecomposer(eta="flip_conflicts")
    assert flip.describe()["eta"] == [1.0, 1.0, -1.0] and flip.describe()["preset"] == "flip_conflicts"
    # Optuna's suggest() with nothing searched gives the same decomposer
    assert GradientDecomposer.suggest(optuna.trial.FixedTrial({}), eta=DEFAULT_ETA) == spec
    # describe() names every setting (runs are told apart by it)
    described = spec.describe()
    assert {f.name for f in dataclasses.fields(GradientDecomposer)} <= set(described)
    assert described["params"] == ["encoder", "!*word_embeddings*"]
    assert (described["k"], described["m"], described["every"], described["eta"]) == (10, 64, 10, [1.0, 1.0, -1.0])
    assert GradientDecomposer(params="encoder").describe() != described


@pytest.mark.parametrize("seed", range(40))
def test_flip_conflicts_never_turns_the_update_against_g_prim_in_the_span(seed):
    """Random low-rank cases: g_prim ∈ span(V) (k ≤ 6 directions in D ≤ 60), g_aux anything, two
    thirds of the draws built to conflict with g_prim. With (1, 1, −1), ⟨d, g_prim⟩ = Σ_j |c_j p_j| ≥ 0 and so
    ⟨g_prim + d, g_prim⟩ ≥ ‖g_prim‖²: the update never points against the primary gradient. The
    multitask sum (1, 1, 1) does on some of these draws."""
    from auxopt.grad.project import recombine, recombine_

    g = torch.Generator().manual_seed(1000 + seed)
    k = int(torch.randint(1, 7, (1,), generator=g))
    dim = int(torch.randint(k + 1, 61, (1,), generator=g))
    basis = random_basis(k, dim, 5000 + seed)
    g_prim = basis.T @ torch.randn(k, generator=g, dtype=torch.float64)
    g_aux = torch.randn(dim, generator=g, dtype=torch.float64) * float(torch.rand(1, generator=g) * 5)
    if seed % 3 == 1:  # conflicting on most coordinates: −4 g_prim plus noise
        g_aux = g_aux - 4.0 * g_prim
    elif seed % 3 == 2:  # conflicting on every coordinate: −4 g_prim plus noise outside the span
        g_aux = g_aux - basis.T @ (basis @ g_aux) - 4.0 * g_prim
    scale = float(g_prim @ g_prim)
    parts = decompose(g_aux, basis, g_prim)
    pair = torch.stack([g_prim, g_aux])
    recombine_(pair, basis, DEFAULT_ETA)
    for d in (combine(parts, "flip_conflicts"), recombine(g_aux, basis, g_prim, DEFAULT_ETA)[0], pair[1]):
        assert float(d @ g_prim) >= -1e-9 * (1 + scale)
        assert float((g_prim + d) @ g_prim) >= scale * (1 - 1e-9)
        c, p = basis @ g_aux, basis @ g_prim
        assert float(d @ g_prim) == pytest.approx(float((c * p).abs().sum()), rel=1e-9, abs=1e-12)
    if seed % 3 == 2:
        assert float((g_prim + combine(parts, "multitask")) @ g_prim) < 0  # the check can fail


def test_pcgrad_preset_is_pcgrad_projection():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        g_prim, g_aux = torch.randn(30, generator=g), torch.randn(30, generator=g)
        parts = decompose(g_aux, primary_grad_basis(g_prim), g_prim)
        got = combine(parts, "pcgrad")
        dot = float(g_aux @ g_prim)
        expected = g_aux - (dot / float(g_prim @ g_prim)) * g_prim if dot < 0 else g_aux
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_decompose_is_fp32_under_bf16_inputs():
    basis = random_basis(3, 20, 0).bfloat16()
    parts = decompose(torch.randn(20).bfloat16(), basis, torch.randn(20).bfloat16())
    assert parts.pos.dtype == parts.perp.dtype == torch.float32


# -- Theorem 1 on a quadratic --------------------------------------------------------------------------
def test_theorem1_small_step_never_increases_primary_loss_on_a_quadratic():
    """Least squares ℓ_i(θ) = ½ (a_iᵀθ − b_i)²: per-example gradients span ⊆ span{a_i}, the mean
    gradient lies in the randomised basis (k = m), and with η_- = 0, η_⊥, η_+ ≥ 0 the update
    direction has ⟨g_prim, d⟩ ≥ 0 and a small step does not raise L; with η_- > 0 it can."""
    gen = torch.Generator().manual_seed(0)
    m, dim = 6, 40
    a = torch.randn(m, dim, generator=gen, dtype=torch.float64)
    b = torch.randn(m, generator=gen, dtype=torch.float64)

    def losses(params):
        return 0.5 * (a @ params["w"] - b) ** 2

    def loss(w):
        return float(losses({"w": w}).mean())

    increased_with_neg = 0
    for trial in range(30):
        w = torch.randn(dim, generator=gen, dtype=torch.float64)
        basis, _ = randomized_basis(losses, {"w": w}, k=m, generator=gen)
        assert is_orthonormal(basis, 1e-10)
        g_prim = a.T @ (a @ w - b) / m
        g_aux = 3.0 * torch.randn(dim, generator=gen, dtype=torch.float64) - 2.0 * g_prim
        parts = decompose(g_aux, basis, g_prim)
        for eta_perp, eta_pos in itertools.product((0.0, 0.5, 1.0, 2.0), repeat=2):
            d = combine(parts, (eta_perp, eta_pos, 0.0))
            assert float(g_prim @ d) >= -1e-10  # first order, without the primary term
            step = g_prim + d  # η_prim = 1
            lr = 1e-4 / (1.0 + float(step.norm()))
            assert loss(w - lr * step) <= loss(w) + 1e-12, (trial, eta_perp, eta_pos)
        step = g_prim + combine(parts, (1.0, 1.0, 1.0))
        lr = 1e-4 / (1.0 + float(step.norm()))
        increased_with_neg += loss(w - lr * step) > loss(w)
    assert increased_with_neg > 0  # keeping conflicts (η_- = 1) does raise the loss sometimes


# -- randomised basis vs exact ----------------------------------------------------------------------------
def small_bert_losses(seed: int):
    """``(losses, params)``: the per-example losses of 24 examples (``params -> (24,)``)."""
    batch_losses, params, batch = small_bert_batch_losses(seed)
    return (lambda ps: batch_losses(ps, batch)), params


def small_bert_batch_losses(seed: int):
    """``(batch_losses, params, batch)``: ``batch_losses(params, (ids, labels)) -> (b,)`` of a tiny
    float64 BERT (dropout off, eager attention) and its 24 examples ``batch``."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    encoder = BertModel(config, add_pooling_layer=False).double().eval()
    head = torch.nn.Linear(16, 3).double()
    ids = torch.randint(0, 50, (24, 8))
    labels = torch.randint(0, 3, (24,))
    params = {n: p.detach() for n, p in encoder.named_parameters()}

    def batch_losses(ps, batch):
        ids, labels = batch
        out = torch.func.functional_call(encoder, ps, (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        return torch.nn.functional.cross_entropy(head(out.last_hidden_state.mean(1)), labels, reduction="none")

    return batch_losses, params, (ids, labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_randomized_basis_matches_exact_svd_on_a_small_model(seed):
    losses, params = small_bert_losses(seed)
    jac = torch.func.jacrev(losses)(params)
    jac = torch.cat([j.detach().reshape(24, -1) for j in jac.values()], dim=1)  # m × D, float64
    exact, s_exact = exact_basis(jac, 6)
    gen = torch.Generator().manual_seed(seed)
    # at the large spectral gap (σ2 ≫ σ3 for this model) the top-2 subspace is recovered exactly
    v2, _ = randomized_basis(losses, params, 2, oversample=5, power_iters=2, generator=gen)
    assert float(principal_angles(v2, exact[:2]).max()) < 1e-2
    # at k = 4 (no gap): singular values from below and within 6 %, Halko's bound ‖J − J VᵀV‖ ≈ σ_{k+1}
    v4, s4 = randomized_basis(losses, params, 4, oversample=5, power_iters=2, generator=gen)
    assert is_orthonormal(v4, 1e-8)
    assert torch.all(s4 <= s_exact[:4] * (1 + 1e-9)) and torch.all(s4 >= 0.94 * s_exact[:4])
    residual = torch.linalg.matrix_norm(jac - (jac @ v4.T) @ v4, ord=2)
    assert float(residual) <= 1.15 * float(s_exact[4])
    # a random 4-D subspace is far off (the check can fail)
    assert float(principal_angles(random_basis(4, jac.shape[1], 0), exact[:4]).min()) > 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_per_example_basis_matches_exact_svd_of_the_jacrev_jacobian(seed):
    vmap_safe_masks()  # transformers' mask skip tests padding_mask.all(): undecidable under vmap
    batch_losses, params, batch = small_bert_batch_losses(seed)
    jac = torch.func.jacrev(lambda ps: batch_losses(ps, batch))(params)
    jac = torch.cat([j.detach().reshape(24, -1) for j in jac.values()], dim=1)  # m × D, float64
    torch.testing.assert_close(per_example_jacobian(batch_losses, params, batch), jac, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        per_example_jacobian(batch_losses, params, batch, chunk_size=5), jac, rtol=1e-9, atol=1e-12
    )
    _, s_svd, vh = torch.linalg.svd(jac, full_matrices=False)  # exact_basis's Gram route vs a plain SVD
    for k in (2, 4, 6):
        v, s = per_example_basis(batch_losses, params, batch, k)
        assert v.shape == (k, jac.shape[1]) and is_orthonormal(v, 1e-10)
        torch.testing.assert_close(s, s_svd[:k], rtol=1e-8, atol=0)
        assert float(principal_angles(v, vh[:k]).max()) < 1e-6
        assert float(principal_angles(v, exact_basis(jac, k)[0]).max()) < 1e-6


def test_exact_basis_guards_rank_deficiency_and_tall_jacobians():
    g = torch.Generator().manual_seed(0)
    low_rank = torch.randn(8, 3, generator=g) @ torch.randn(3, 200, generator=g)  # rank 3 < k = 5
    v, s = exact_basis(low_rank, 5)
    assert is_orthonormal(v, 1e-5) and torch.all(torch.isfinite(v))
    torch.testing.assert_close(s[:3], torch.linalg.svdvals(low_rank)[:3], rtol=1e-4, atol=0)
    assert float(s[3:].max()) < 1e-2 * float(s[0])
    tall = torch.randn(30, 6, generator=g, dtype=torch.float64)
    v, s = exact_basis(tall, 4)
    assert is_orthonormal(v, 1e-10)
    torch.testing.assert_close(s, torch.linalg.svdvals(tall)[:4])
    with pytest.raises(ValueError, match="k must be in"):
        exact_basis(tall, 7)


def test_randomized_basis_rejects_k_above_m():
    losses, params = small_bert_losses(0)
    with pytest.raises(ValueError, match="k must be in"):
        randomized_basis(losses, params, 25)


# -- the trainer plugin ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tasks():
    from auxopt.tasks import make_synthetic_suite

    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=0, n_train=120, n_aux_train=200, n_dev=60, n_test=60
    )
    return suite.primary, suite.auxiliaries


BASE = dict(model="tiny", max_steps=12, eval_every=6, max_length=16, batch_size=8, eval_batch_size=64, device="cpu")


def make_ctx(config):
    """A TrainContext built the way ``auxopt.train.train`` builds it."""
    from auxopt.models import encode_split
    from auxopt.tasks.batches import Batches
    from auxopt.train.loop import build_model
    from auxopt.train.runtime import resolve_device
    from auxopt.train.schedules import make_schedule
    from auxopt.train.step import TrainContext

    torch.manual_seed(config.seed)
    ratios = config.active_ratios()
    tasks = {t.name: t for t in config.tasks if t.name in ratios}
    model, tokenizer = build_model(config, list(tasks.values()))
    data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    return TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=data,
        train_labels={n: torch.as_tensor(t.train.labels) for n, t in tasks.items()},
        batches={n: Batches(len(d), config.batch_size, i) for i, (n, d) in enumerate(data.items())},
        dev_data=encode_split(tokenizer, config.primary, "dev", config.max_length),
        schedule=make_schedule(ratios, config.schedule, seed=config.seed),
        device=resolve_device("cpu"),
        bf16=False,
    )


@pytest.mark.parametrize("eta, eta_prim", [((0.3, 1.5, 0.0), 0.7), ("pcgrad", 1.0)])
def test_step_leaves_the_recombined_gradient_in_param_grad(tasks, eta, eta_prim):
    from auxopt.train import TrainConfig

    primary, aux = tasks
    config = TrainConfig(primary, aux[:1], seed=1, **BASE)
    ctx = make_ctx(config)
    ctx.model.eval()  # no dropout: the replay below sees the same function
    spec = GradientDecomposer(k=3, m=8, every=5, eta=eta, eta_prim=eta_prim)
    step = spec.make_step(ctx)
    before = {n: copy.deepcopy(b.state_dict()) for n, b in ctx.batches.items()}
    step.backward(1)
    got = {n: p.grad.clone() for n, p in ctx.model.named_parameters() if p.grad is not None}

    # replay: the two task gradients, computed independently
    for n, b in ctx.batches.items():
        b.load_state_dict(before[n])
    grads = {}
    for name in (primary.name, aux[0].name):
        ctx.model.zero_grad(set_to_none=True)
        ctx.loss(name, 1)[0].backward()
        grads[name] = {n: p.grad.clone() for n, p in ctx.model.named_parameters() if p.grad is not None}
    shared = step.names  # the default: every encoder parameter but the word embeddings
    assert shared == [
        n for n, _ in ctx.model.named_parameters() if n.startswith("encoder.") and "word_embeddings" not in n
    ]
    g_p = torch.cat([grads[primary.name][n].reshape(-1) for n in shared])
    g_a = torch.cat([grads[aux[0].name][n].reshape(-1) for n in shared])
    basis = step.basis if eta != "pcgrad" else primary_grad_basis(g_p)
    expected = eta_prim * g_p + combine(decompose(g_a, basis, g_p), eta)
    torch.testing.assert_close(torch.cat([got[n].reshape(-1) for n in shared]), expected, atol=1e-6, rtol=1e-5)
    for task in (primary, aux[0]):  # heads: their own task's gradient
        name = f"heads.{task.head_name}.weight"
        torch.testing.assert_close(got[name], grads[task.name][name])
    words = "encoder.embeddings.word_embeddings.weight"  # left out: the plain sum, whatever η
    torch.testing.assert_close(got[words], grads[primary.name][words] + grads[aux[0].name][words])
    assert float(got[words].abs().sum()) > 0
    if eta != "pcgrad":
        assert step.basis.shape == (3, g_p.numel()) and step.basis.dtype == torch.float32
        assert is_orthonormal(step.basis, 1e-4)


@pytest.mark.parametrize("method", ["per_example", "randomized", "auto"])
def test_train_records_grad_parts_and_refreshes_every_n_steps(tasks, method):
    from auxopt.train import TrainConfig, train

    primary, aux = tasks
    spec = GradientDecomposer(k=2, m=8, every=5, log_every=4, method=method)
    result = train(TrainConfig(primary, aux, decomposer=spec, **BASE))
    assert result.extra["grad_basis"]["method"] == ("per_example" if method == "auto" else method)
    parts = result.extra["grad_parts"]
    assert set(parts) == {"steps", "pos", "neg", "perp", "prim"}
    assert parts["steps"] == [1, 4, 8, 12]
    assert all(len(parts[k]) == 4 for k in parts)
    assert all(x >= 0 and math.isfinite(x) for k in ("pos", "neg", "perp", "prim") for x in parts[k])
    assert result.extra["grad_basis"]["refreshes"] == 3  # steps 1, 6, 11
    assert result.examples[primary.name] == 12 * 8  # one primary batch every step
    assert sum(result.examples[a.name] for a in aux) == 12 * 8
    assert math.isfinite(result.best_dev)
    assert all(math.isfinite(s) and s >= 0 for s in result.extra["grad_basis"]["singular_values"])


def test_regression_primary_with_either_method(tasks):
    from auxopt.tasks import build_task
    from auxopt.train import TrainConfig

    primary, aux = tasks
    records = {
        split: [
            {"text": t, "label": float(y) + 0.25 * (i % 3)}
            for i, (t, y) in enumerate(zip(data.texts, data.labels, strict=True))
        ]
        for split, data in (("train", primary.train), ("dev", primary.dev))
    }
    regression = build_task("reg", records, kind="regression")
    ctx = make_ctx(TrainConfig(regression, aux[:1], **BASE))
    ctx.model.eval()
    bases = {}
    for method in ("per_example", "randomized"):
        step = GradientDecomposer(k=2, m=8, method=method, power_iters=3).make_step(ctx)
        step.backward(1)
        ctx.model.zero_grad(set_to_none=True)
        assert step.method == method and is_orthonormal(step.basis, 1e-4)
        assert all(math.isfinite(s) for s in step.singular_values)
        bases[method] = step.basis
    # the same reference batch and function: the top direction agrees (its gap is large here)
    assert float(principal_angles(bases["per_example"][:1], bases["randomized"][:1]).max()) < 0.05


def test_auto_method_follows_the_memory_budget(tasks, monkeypatch):
    import auxopt.grad.attittud as decomposer  # where the basis is computed (GradientDecomposer calls it)
    from auxopt.grad.subspace import basis_bytes
    from auxopt.train import TrainConfig

    primary, aux = tasks
    ctx = make_ctx(TrainConfig(primary, aux[:1], **BASE))
    step = GradientDecomposer(k=2, m=8).make_step(ctx)
    assert step.method == "per_example"
    tight = basis_bytes(8, step.dim) - 1  # the k × D basis fits, the m × D Jacobian does not
    assert GradientDecomposer(k=2, m=8, memory_budget=tight).make_step(ctx).method == "randomized"
    with pytest.raises(AuxoptError, match="method='per_example' holds the m × D"):
        GradientDecomposer(k=2, m=8, memory_budget=tight, method="per_example").make_step(ctx)

    # a model vmap cannot batch: "auto" falls back to the randomized method, "per_example" refuses
    def unbatchable(*args, **kwargs):
        raise RuntimeError("vmap: It looks like you're ... data-dependent control flow")

    monkeypatch.setattr(decomposer, "per_example_basis", unbatchable)
    with pytest.warns(RuntimeWarning, match="using method='randomized'"):
        step.refresh(1)
    assert step.method == "randomized" and is_orthonormal(step.basis, 1e-4)
    strict = GradientDecomposer(k=2, m=8, method="per_example").make_step(ctx)
    with pytest.raises(AuxoptError, match="use method='randomized'"):
        strict.refresh(1)


@pytest.mark.parametrize("method", ["per_example", "randomized"])
def test_state_dict_round_trip(tasks, method):
    from auxopt.train import TrainConfig

    primary, aux = tasks
    config = TrainConfig(primary, aux[:1], **BASE)
    spec = GradientDecomposer(k=2, m=8, every=3, method=method)
    ctx = make_ctx(config)
    step = spec.make_step(ctx)
    for i in range(1, 5):
        step.backward(i)
        ctx.model.zero_grad(set_to_none=True)
    state = step.state_dict()
    fresh = spec.make_step(ctx)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.basis, step.basis)
    assert (fresh.refreshes, fresh.last_refresh) == (2, 4)
    assert fresh.summary() == step.summary()
    assert torch.equal(fresh.reference.next(), step.reference.next())  # same reference stream
    bad = dict(state, basis=torch.zeros(3, 5))
    with pytest.raises(AuxoptError, match="same k and params"):
        fresh.load_state_dict(bad)


def test_objective_stores_grad_parts_on_the_trial(tasks):
    import optuna

    from auxopt import StudySpec

    primary, aux = tasks
    spec = StudySpec(
        name="attittud_test",
        primary=primary,
        auxiliaries=aux[:1],
        space=lambda trial: {"decomposer": GradientDecomposer.suggest(trial, k=(1, 4), m=8, eta=(0.0, 1.0))},
        base=BASE,
        storage="sqlite:///:memory:",
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.optimize(spec.objective(), n_trials=1)
    trial = study.trials[0]
    assert set(trial.params) == {"attittud_k", "attittud_eta_perp", "attittud_eta_pos", "attittud_eta_neg"}
    assert 1 <= trial.params["attittud_k"] <= 4
    assert trial.user_attrs["grad_parts"]["steps"][0] == 1
    assert trial.user_attrs["config"]["decomposer"]["k"] == trial.params["attittud_k"]
    assert trial.user_attrs["config"]["decomposer"]["method"] == "auto"


def test_bf16_autocast_on_cpu_keeps_basis_fp32(tasks):
    from auxopt.train import TrainConfig

    primary, aux = tasks
    config = TrainConfig(primary, aux[:1], bf16=True, **BASE)
    ctx = make_ctx(config)
    ctx.bf16 = True
    step = GradientDecomposer(k=2, m=8).make_step(ctx)
    step.backward(1)
    assert step.basis.dtype == torch.float32 and is_orthonormal(step.basis, 1e-4)
    assert all(p.grad.dtype == torch.float32 for p in step.shared)
    assert all(math.isfinite(x) for x in step.log["perp"])


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none (CPU paths are tested above)"
)
def test_cuda_bf16_training_step(tasks):
    from auxopt.train import TrainConfig, train

    primary, aux = tasks
    config = TrainConfig(
        primary, aux, decomposer=GradientDecomposer(k=2, m=8, every=4), **{**BASE, "device": "cuda", "bf16": True}
    )
    result = train(config)
    assert result.device.startswith("cuda")
    assert result.extra["grad_basis"]["refreshes"] == 3
    assert all(math.isfinite(x) for x in result.extra["grad_parts"]["perp"])


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=40, m=32), "k=40 exceeds m=32"),
        (dict(k=0), "k must be an integer >= 1"),
        (dict(every=0), "every must be an integer >= 1"),
        (dict(eta=(1.0, float("nan"), 0.0)), "finite"),
        (dict(eta=(1.0, float("inf"), 0.0)), "finite"),
        (dict(eta=(1.0, 1.0)), "three numbers"),
        (dict(eta="bogus"), "unknown eta preset"),
        (dict(eta_prim=float("nan")), "eta_prim must be a finite"),
        (dict(params=()), "params must be"),
        (dict(params=("encoder", "!")), "params must be non-empty"),
        (dict(params=("!*word_embeddings*",)), "only exclude"),
        (dict(params=5), "params must be name pattern"),
        (dict(k=10, m=8), "k=10 exceeds m=8"),
        (dict(memory_budget=0), "memory_budget"),
        (dict(method="exact"), "method must be one of 'auto', 'per_example', 'randomized', not 'exact'"),
        (dict(method=None), "method must be one of .*, not None"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(AuxoptError, match=message):
        GradientDecomposer(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(params="decoder"), "match no shared parameter"),
        (dict(params="heads"), "match no shared parameter"),
        (dict(memory_budget=1000), "over memory_budget"),
    ],
)
def test_bad_settings_are_refused_before_training(tasks, kwargs, message):
    from auxopt.train import TrainConfig, train

    primary, aux = tasks
    with pytest.raises(AuxoptError, match=message):
        train(TrainConfig(primary, aux, decomposer=GradientDecomposer(k=2, m=8, **kwargs), **BASE))


def test_needs_an_auxiliary_task(tasks):
    from auxopt.train import TrainConfig, train

    primary, _ = tasks
    with pytest.raises(AuxoptError, match="at least one auxiliary"):
        train(TrainConfig(primary, (), decomposer=GradientDecomposer(k=2, m=8), **BASE))


def test_parameter_selection_by_glob(tasks):
    from auxopt.train import TrainConfig

    primary, aux = tasks
    ctx = make_ctx(TrainConfig(primary, aux[:1], **BASE))
    step = GradientDecomposer(k=2, m=8, params="encoder.encoder.layer.1.*").make_step(ctx)
    assert step.names and all(n.startswith("encoder.encoder.layer.1.") for n in step.names)
    step.backward(1)
    assert step.basis.shape[1] == sum(p.numel() for p in step.shared)
    # unselected shared params still get gradients (plain sum of the two tasks)
    assert ctx.model.encoder.embeddings.word_embeddings.weight.grad is not None


def test_word_embeddings_are_left_out_by_default_and_included_by_params(tasks):
    from auxopt.grad import select_parameters
    from auxopt.train import TrainConfig

    primary, aux = tasks
    ctx = make_ctx(TrainConfig(primary, aux[:1], **BASE))
    words = "encoder.embeddings.word_embeddings.weight"
    encoder = [n for n, _ in ctx.model.named_parameters() if n.startswith("encoder.")]
    default = GradientDecomposer(k=2, m=8).make_step(ctx)
    assert words not in default.names and default.names == [n for n in encoder if n != words]
    assert "encoder.embeddings.position_embeddings.weight" in default.names  # only the word matrix goes
    assert default.dim == sum(p.numel() for n, p in ctx.model.named_parameters() if n in default.names)
    full = GradientDecomposer(k=2, m=8, params="encoder").make_step(ctx)
    assert (
        full.names == encoder and full.dim == default.dim + ctx.model.encoder.embeddings.word_embeddings.weight.numel()
    )
    assert GradientDecomposer(k=2, m=8, params=("encoder", words)).make_step(ctx).names == encoder
    only = select_parameters(ctx.model, ("encoder.encoder.layer.*", "!*.attention.*"))
    assert only and all(".layer." in n and ".attention." not in n for n, _ in only)
    full.backward(1)
    assert full.basis.shape == (2, full.dim)
    with pytest.raises(AuxoptError, match="match no shared parameter"):
        select_parameters(ctx.model, ("encoder.embeddings.word_embeddings", "!*word_embeddings*"))


def test_flatten_round_trip():
    from auxopt.grad.subspace import unflatten

    tree = {"a": torch.randn(2, 3), "b": torch.randn(4)}
    back = unflatten(flatten(tree), tree)
    assert all(torch.equal(back[k], tree[k]) for k in tree)


def test_attittud_study_file_builds_a_decomposer(shared_data):
    import runpy
    from pathlib import Path

    import optuna

    from auxopt.study import StudySpec

    spec = runpy.run_path(str(Path(__file__).resolve().parents[1] / "studies" / "attittud.py"))["study"]
    assert isinstance(spec, StudySpec)
    trial = optuna.trial.FixedTrial(
        {"attittud_k": 4, "attittud_eta_perp": 0.5, "attittud_eta_pos": 1.0, "attittud_eta_neg": 0.0}
    )
    config = spec.build_config(trial)
    assert isinstance(config.decomposer, GradientDecomposer)
    assert (config.decomposer.k, config.decomposer.eta) == (4, (0.5, 1.0, 0.0))


def test_trainer_step_is_a_client_of_the_functional_core(tasks):
    """GradientDecomposer's step delegates the method to ``Attittud`` (one implementation, also
    for plain loops: tests/test_own_loop.py); the refresh gives the model its modes back."""
    from auxopt.grad import Attittud
    from auxopt.train import TrainConfig

    primary, aux = tasks
    ctx = make_ctx(TrainConfig(primary, aux[:1], **BASE))
    ctx.model.train()
    attention = ctx.model.encoder.config._attn_implementation
    step = GradientDecomposer(k=2, m=8, every=3).make_step(ctx)
    assert isinstance(step.attittud, Attittud) and step.attittud.names == step.names
    step.backward(1)
    assert step.basis is step.attittud.basis and (step.attittud.steps, step.attittud.last_refresh) == (1, 1)
    assert all(m.training for m in ctx.model.modules())
    assert ctx.model.encoder.config._attn_implementation == attention


def test_length_groups_give_the_basis_of_one_padded_batch(tasks):
    """A refresh over the reference examples in length groups (each padded to its own longest) spans
    the same subspace, with the same singular values, as over one batch padded to the longest."""
    from torch.func import functional_call

    from auxopt.grad.modes import basis_mode
    from auxopt.grad.trainer_step import REFERENCE_GROUP
    from auxopt.models.losses import per_example_loss
    from auxopt.train import TrainConfig

    primary, aux = tasks
    config = TrainConfig(primary, aux[:1], seed=2, **{**BASE, "max_length": 32})
    ctx = make_ctx(config)
    step = GradientDecomposer(k=4, m=48, every=5).make_step(ctx)
    state = step.reference.state_dict()
    step.refresh(1)
    grouped, grouped_s = step.basis.clone(), torch.tensor(step.singular_values)

    step.reference.load_state_dict(state)  # the same 48 examples, as one batch padded to the longest
    index = step.reference.next()
    data = ctx.train_data[primary.name]
    widths = {
        int(data.lengths[part].max()) for part in index[torch.argsort(data.lengths[index])].split(REFERENCE_GROUP)
    }
    assert len(widths) > 1  # the groups really are padded to different lengths
    batch = (data.batch(index), ctx.train_labels[primary.name][index])

    def losses(params, b):
        logits = functional_call(ctx.model, params, args=(primary.head_name,), kwargs=b[0])
        return per_example_loss(primary, logits, b[1])

    with basis_mode(ctx.model), torch.no_grad():
        whole, whole_s = per_example_basis(losses, step.attittud.params, batch, 4)
    assert torch.allclose(grouped_s, whole_s, rtol=1e-4)
    cos = torch.linalg.svdvals(grouped.double() @ whole.double().T)
    assert float(cos.min()) > 1 - 1e-4  # the same span
