"""The OptunaHub packages in ``optunahub-registry/`` (laid out as optunahub-registry's ``package/``):
each loads with ``optunahub.load_local_module``, hands out auxopt's own sampler, runs a small study,
and its ``example.py`` runs as a user would run it (``optunahub.load_module`` answered from here)."""

from __future__ import annotations

import runpy
from pathlib import Path

import optuna
import pytest

optunahub = pytest.importorskip("optunahub", reason="optunahub is not installed (pip install -e '.[dev]')")

REGISTRY = Path(__file__).resolve().parents[1] / "optunahub-registry" / "package"
PACKAGES = {
    "samplers/auxopt_thompson_task": "ThompsonTaskSampler",
    "samplers/auxopt_mixing_ratio": "MixingRatioSampler",
}


def _front_matter(readme: Path) -> dict[str, str]:
    text = readme.read_text()
    assert text.startswith("---\n"), f"{readme} has no front matter"
    block = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_package_is_laid_out_as_the_registry_expects(package):
    folder = REGISTRY / package
    for name in ("README.md", "LICENSE", "__init__.py", "example.py", "requirements.txt"):
        assert (folder / name).is_file(), f"{package} lacks {name}"
    meta = _front_matter(folder / "README.md")
    assert {"author", "title", "description", "tags", "optuna_versions", "license"} <= set(meta)
    assert "sampler" in meta["tags"]  # the registry's rule for package/samplers/
    assert "MIT" in (folder / "LICENSE").read_text() and "MIT" in meta["license"]
    assert "auxopt" in (folder / "requirements.txt").read_text()


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_package_loads_auxopt_s_sampler(package):
    import auxopt.samplers

    module = optunahub.load_local_module(package, registry_root=str(REGISTRY))
    name = PACKAGES[package]
    assert getattr(module, name) is getattr(auxopt.samplers, name)


def test_thompson_package_runs_a_study_that_pulls_the_helpful_arm_most():
    module = optunahub.load_local_module("samplers/auxopt_thompson_task", registry_root=str(REGISTRY))
    values = {"none": 0.5, "good": 0.9, "bad": 0.1}
    sampler = module.ThompsonTaskSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: values[t.suggest_categorical("aux_task", list(values))], n_trials=30)
    pulls = sampler.pulls(study)
    assert pulls["good"] > pulls["bad"] and module.select_tasks(sampler.evidence(study)) == ["good"]


def test_mixing_package_runs_a_study_that_improves_on_its_startup_points():
    module = optunahub.load_local_module("samplers/auxopt_mixing_ratio", registry_root=str(REGISTRY))
    study = optuna.create_study(
        direction="maximize", sampler=module.MixingRatioSampler(seed=0, n_startup_trials=4, raw_samples=32)
    )
    study.optimize(lambda t: -((t.suggest_float("ratio_a", 0.0, 4.0) - 1.5) ** 2), n_trials=10)
    startup_best = max(t.value for t in study.trials[:4])
    assert study.best_value >= startup_best and study.best_value > -0.05


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_example_runs(package, monkeypatch, capsys):
    monkeypatch.setattr(
        optunahub, "load_module", lambda name, **_: optunahub.load_local_module(name, registry_root=str(REGISTRY))
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        runpy.run_path(str(REGISTRY / package / "example.py"), run_name="__main__")
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)
    out = capsys.readouterr().out
    assert ("kept: ['sst2'" in out) if "thompson" in package else ("best: {'ratio_sst2': 1.4" in out)
