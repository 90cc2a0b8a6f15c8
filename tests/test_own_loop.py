"""ATTITTUD in a plain PyTorch loop (``auxopt.grad.Attittud``, issue 19): the update it leaves in
``.grad`` against the decomposition algebra, its guarantees on a real model, the refresh schedule,
``basis_mode``, checkpoints, bad input, and ``examples/attittud_digits.py`` end to end."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from auxopt.errors import AuxoptError
from auxopt.grad import (
    Attittud,
    basis_mode,
    combine,
    decompose,
    exact_basis,
    primary_grad_basis,
    principal_angles,
)
from auxopt.grad.subspace import is_orthonormal

pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (pip install 'auxopt[dev]')")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attittud_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("attittud_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(example):
    return example.load_data(0, n_per_class=5)


def setup(example, eta, k=5, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = example.Net().eval()  # no dropout: the replays below see the same function
    method = Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=k, eta=eta, seed=seed, **kwargs)

    def per_example_loss(params, batch):
        x, y = batch
        return F.cross_entropy(functional_call(model, params, (x, "primary")), y, reduction="none")

    return model, method, per_example_loss


def losses(model, data, aux, g):
    """Zero-argument callables for a primary and an auxiliary minibatch's losses (each call runs a
    fresh forward pass on the same minibatch)."""
    x_p, y_p = data["primary"]
    index = torch.randint(0, len(y_p), (16,), generator=g)
    x_p, y_p = x_p[index], y_p[index]
    index = torch.randint(0, len(data[aux][1]), (32,), generator=g)
    x_a, y_a = data[aux][0][index], data[aux][1][index]
    return (lambda: F.cross_entropy(model(x_p, "primary"), y_p)), (lambda: F.cross_entropy(model(x_a, "aux"), y_a))


def grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def flat(tree: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([tree[n].reshape(-1) if n in tree else torch.zeros(0) for n in names])


def walk(model, method, per_example_loss, data, aux, steps, check, lr=0.05):
    """Train with ``method.backward`` for ``steps`` steps (SGD), calling ``check(got, g_p, g_a)`` with
    the ``.grad`` it left and the two gradients computed apart, on every step."""
    g = torch.Generator().manual_seed(1)
    names = method.names
    for _ in range(steps):
        if method.due():
            method.refresh(per_example_loss, data["primary"], module=model)
        primary, auxiliary = losses(model, data, aux, g)
        g_p, g_a = grads(model, primary()), grads(model, auxiliary())
        method.backward(primary(), auxiliary())
        got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        check(got, g_p, g_a, flat(got, names), flat(g_p, names), flat(g_a, names))
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("eta", [(1.0, 1.0, -1.0), (0.5, 2.0, -0.3), (1.0, 1.0, 0.0), (0.0, 1.0, 0.0)])
def test_the_update_matches_the_decomposition_and_never_conflicts_inside_the_span(example, data, eta):
    """On the digits MLP with the random-label auxiliary, every step: the trunk's .grad is
    g_prim + combine(decompose(g_aux, V, g_prim), η) (the reference algebra), each in-span coordinate
    of the auxiliary direction agrees in sign with the primary's when η− ≤ 0 ≤ η+ (so its inner
    product with the primary gradient's in-span part is ≥ 0), η⊥ = 0 keeps it inside span(V), and
    the heads get their own task's gradient. The plain sum breaks the sign check on some step."""
    model, method, per_example_loss = setup(example, eta)
    plain_conflicts = []

    def check(got, g_p, g_a, u, gp, ga):
        basis = method.basis
        expected = gp + combine(decompose(ga, basis, gp), eta)
        torch.testing.assert_close(u, expected, atol=1e-6, rtol=1e-5)
        p, c = basis @ gp, basis @ (u - gp)
        tol = 1e-6 * (1 + float(p.abs().max()) * float(c.abs().max()))
        assert torch.all(c * p >= -tol)
        assert float((u - gp) @ (basis.T @ p)) >= -tol
        if eta[0] == 0.0:  # nothing of the auxiliary outside the primary subspace
            inside = basis.T @ c
            assert float(torch.linalg.vector_norm((u - gp) - inside)) <= 1e-5 * (1 + float(ga.norm()))
        plain = basis @ ga
        plain_conflicts.append(bool(torch.any(plain * p < 0)))
        torch.testing.assert_close(got["heads.primary.weight"], g_p["heads.primary.weight"])
        torch.testing.assert_close(got["heads.aux.weight"], g_a["heads.aux.weight"])

    walk(model, method, per_example_loss, data, "unrelated", 12, check)
    assert method.refreshes == 2 and is_orthonormal(method.basis, 1e-5)
    assert any(plain_conflicts)  # the sign check is not vacuous: the plain sum conflicts somewhere


def test_multitask_eta_is_the_plain_sum_even_from_one_shared_forward(example, data):
    """η = (1, 1, 1) gives back (loss_p + loss_a).backward() on every parameter, also when both losses
    come from one forward pass (their graphs overlap: backward keeps it for the second loss)."""
    model, method, per_example_loss = setup(example, (1.0, 1.0, 1.0))
    method.refresh(per_example_loss, data["primary"], module=model)
    x, y = data["primary"]
    parity = y % 2

    def two_losses():
        features = model.trunk(x)
        return F.cross_entropy(model.heads["primary"](features), y), F.cross_entropy(
            model.heads["aux"](features), parity
        )

    loss_p, loss_a = two_losses()
    expected = grads(model, loss_p + loss_a)
    loss_p, loss_a = two_losses()
    method.backward(loss_p, loss_a)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-6, rtol=1e-5)


def test_several_auxiliary_losses_are_decomposed_one_by_one(example, data):
    model, method, per_example_loss = setup(example, (0.5, 1.0, -1.0), eta_prim=0.7)
    method.refresh(per_example_loss, data["primary"], module=model)
    g = torch.Generator().manual_seed(3)
    primary, helpful = losses(model, data, "helpful", g)
    _, unrelated = losses(model, data, "unrelated", g)
    parts = [flat(grads(model, f()), method.names) for f in (primary, helpful, unrelated)]
    record = method.backward(primary, [helpful, unrelated], norms=True)  # callables: evaluated lazily
    u = flat({n: p.grad for n, p in model.named_parameters()}, method.names)
    gp = parts[0]
    expected = 0.7 * gp + sum(combine(decompose(ga, method.basis, gp), (0.5, 1.0, -1.0)) for ga in parts[1:])
    torch.testing.assert_close(u, expected, atol=1e-6, rtol=1e-5)
    for i, ga in enumerate(parts[1:]):
        norms = decompose(ga, method.basis, gp).norms()
        assert [record[key][i] for key in ("pos", "neg", "perp")] == pytest.approx(
            [norms[key] for key in ("pos", "neg", "perp")], rel=1e-4, abs=1e-7
        )
    assert record["prim"] == pytest.approx(float(gp.norm()), rel=1e-5)
    # the buffer is reused: a second call with one auxiliary loss is right too
    method.backward(primary, helpful)
    u = flat({n: p.grad for n, p in model.named_parameters()}, method.names)
    torch.testing.assert_close(
        u, 0.7 * gp + combine(decompose(parts[1], method.basis, gp), (0.5, 1.0, -1.0)), atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("method_name", ["per_example", "randomized"])
def test_refresh_spans_the_top_singular_vectors_of_the_per_example_gradients(example, data, method_name):
    """The basis from the user's per-example loss is the top-k right singular space of the explicit
    per-example Jacobian (torch.func.jacrev), by either method."""
    model, method, per_example_loss = setup(example, (1.0, 1.0, -1.0), k=3, method=method_name, power_iters=3)
    params = {n: p.detach() for n, p in method.params.items()}
    jac = torch.func.jacrev(lambda ps: per_example_loss(ps, data["primary"]))(params)
    jac = torch.cat([j.reshape(len(data["primary"][1]), -1) for j in jac.values()], dim=1)
    exact, s = exact_basis(jac, 3)
    basis = method.refresh(per_example_loss, data["primary"])
    assert method.method == method_name and basis.shape == (3, method.dim) and is_orthonormal(basis, 1e-5)
    assert float(principal_angles(basis[:1], exact[:1]).max()) < 0.05
    assert method.singular_values == pytest.approx(s.tolist(), rel=0.05 if method_name == "randomized" else 1e-4)


def test_refresh_schedule_basis_mode_and_checkpoints(example, data):
    torch.manual_seed(0)
    model = example.Net()  # training mode: dropout on
    method = Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=4, every=10, seed=0)
    seen = []

    def per_example_loss(params, batch):
        seen.append(model.training or any(m.training for m in model.modules()))
        x, y = batch
        return F.cross_entropy(functional_call(model, params, (x, "primary")), y, reduction="none")

    g, refreshed_at = torch.Generator().manual_seed(0), []
    for step in range(1, 26):
        if method.due():
            method.refresh(per_example_loss, data["primary"], module=model)
            refreshed_at.append(step)
        primary, auxiliary = losses(model, data, "helpful", g)
        method.backward(primary, auxiliary)
    assert refreshed_at == [1, 11, 21] and (method.refreshes, method.last_refresh, method.steps) == (3, 21, 25)
    assert seen and not any(seen)  # dropout off while the basis is computed …
    assert all(m.training for m in model.modules())  # … and the model's modes back afterwards
    model.trunk[2].eval()  # a submodule the user keeps in eval mode stays so
    method.refresh(per_example_loss, data["primary"], module=model)
    assert model.training and not model.trunk[2].training
    state = method.state_dict()
    fresh = Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=4, every=10, seed=0)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.basis, method.basis)
    assert (fresh.steps, fresh.last_refresh, fresh.due(), fresh.method) == (25, 26, False, method.method)
    assert torch.equal(fresh.generator.get_state(), method.generator.get_state())
    with pytest.raises(AuxoptError, match="same k and params"):
        Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=3).load_state_dict(state)


def test_basis_mode_switches_a_transformers_model_to_eager_attention():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
        attn_implementation="sdpa",
    )
    model = torch.nn.Sequential(BertModel(config)).train()
    with basis_mode(model):
        assert model[0].config._attn_implementation == "eager" and not model[0].training
    assert model[0].config._attn_implementation == "sdpa" and all(m.training for m in model.modules())


def test_pcgrad_needs_no_refresh(example, data):
    model, method, _ = setup(example, "pcgrad")
    assert not method.due()
    g = torch.Generator().manual_seed(5)
    primary, auxiliary = losses(model, data, "unrelated", g)
    gp, ga = (flat(grads(model, f()), method.names) for f in (primary, auxiliary))
    method.backward(primary, auxiliary)
    u = flat({n: p.grad for n, p in model.named_parameters()}, method.names)
    torch.testing.assert_close(
        u, gp + combine(decompose(ga, primary_grad_basis(gp), gp), "pcgrad"), atol=1e-6, rtol=1e-5
    )


def test_bad_input_is_refused(example, data):
    model, method, per_example_loss = setup(example, (1.0, 1.0, -1.0))
    g = torch.Generator().manual_seed(0)
    primary, auxiliary = losses(model, data, "helpful", g)
    with pytest.raises(AuxoptError, match=r"no primary subspace yet; call refresh"):
        method.backward(primary, auxiliary)
    with pytest.raises(AuxoptError, match="params must be named tensors"):
        Attittud(list(model.trunk.parameters()))
    with pytest.raises(AuxoptError, match="params is empty"):
        Attittud({})
    with pytest.raises(AuxoptError, match="k=6 but the reference batch has only 4 examples"):
        Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=6).refresh(
            per_example_loss, (data["primary"][0][:4], data["primary"][1][:4])
        )
    with pytest.raises(AuxoptError, match="over memory_budget"):
        Attittud(dict(model.trunk.named_parameters(prefix="trunk")), k=5, memory_budget=1000)
    with pytest.raises(AuxoptError, match="at least one auxiliary loss"):
        method.backward(primary, [])
    with pytest.raises(AuxoptError, match="eta must be three numbers"):
        Attittud(dict(model.trunk.named_parameters(prefix="trunk")), eta=(1.0, 1.0))


def test_the_digits_example_runs_end_to_end(example, capsys):
    results = example.main(seeds=range(2), steps=25)
    assert set(results) == set(example.CONFIGS)
    assert all(len(v) == 2 and all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in v) for v in results.values())
    # better than chance (0.2) after 25 steps on 25 images: the loop really trains
    assert min(results["primary alone"]) > 0.3
    out = capsys.readouterr().out
    assert all(name in out for name in example.CONFIGS) and "paired differences" in out
