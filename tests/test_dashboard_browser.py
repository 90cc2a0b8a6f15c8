"""The dashboard in a real headless Chromium: the study page and each auxopt plot render.

The study comes from the quickstart (``studies/quickstart.py``, shortened to 60 steps a trial, with
its ``aux_task`` chosen by a ThompsonTaskSampler so that the Thompson plot has data); its first trial
trains with AANG's online weighting and its second with ATTITTUD's decomposition, so that their
plots show real records.

Set ``AUXOPT_UPDATE_SCREENSHOT=1`` to write the screenshot to ``docs/dashboard.png`` (the README's);
otherwise it goes to the test's temporary folder. Skips with the reason when Playwright or a
Chromium binary is missing, or when the browser does not start.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from auxopt import dashboard

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLOT_IDS = ["auxopt-thompson", "auxopt-mixing", "auxopt-aang", "auxopt-attittud", "auxopt-dev-curves"]


def chromium_path() -> str | None:
    for candidate in (
        os.environ.get("AUXOPT_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def quickstart_study(tmp_path_factory):
    import dataclasses

    import optuna

    from auxopt.cli import quickstart_file
    from auxopt.grad import GradientDecomposer
    from auxopt.objective import Objective
    from auxopt.objectives import AANG
    from auxopt.samplers import ThompsonTaskSampler
    from auxopt.study_file import load_study_file
    from auxopt.train import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'quickstart.db'}"
    spec = load_study_file(quickstart_file())
    spec.base = {**spec.base, "max_steps": 60, "eval_every": 20}
    spec.sampler = ThompsonTaskSampler(seed=0, independent_sampler=optuna.samplers.RandomSampler(seed=0))

    plugins = [  # the first two runs train with AANG and with ATTITTUD: their plots get real records
        {"objectives": AANG(k=2, update_every=2, log_every=5)},
        {"decomposer": GradientDecomposer(k=2, m=8, every=10, log_every=5)},
    ]

    def train_with_plugins(config, reporter):
        if plugins:
            config = dataclasses.replace(config, **plugins.pop(0))
        return train(config, reporter)

    spec.objective = lambda artifacts=None: Objective(spec.build_config, train_fn=train_with_plugins)
    study = spec.optimize(n_trials=10, storage=url, publish_every=5)
    assert sorted(dashboard.publish(study, spec.sampler)) == sorted(PLOT_IDS)
    return url, study


@pytest.fixture
def served(quickstart_study):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    url, study = quickstart_study
    app, _ = dashboard.make_app(url)
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", study
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():  # started before the study is built, so a missing browser skips at once
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set AUXOPT_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as e:  # noqa: BLE001 - any launch failure means: no browser here
            pytest.skip(f"Chromium at {executable} did not start: {str(e).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.slow
def test_dashboard_renders_auxopt_plots_in_chromium(browser, served, tmp_path):
    base, study = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/dashboard/studies/{study._study_id}", timeout=60_000)
    page.wait_for_selector(f"text={study.study_name}", timeout=30_000)  # the study page
    for plot_id in PLOT_IDS:
        # optuna-dashboard renders custom figure <id> into #user-defined-plot:<id>; plotly draws SVG
        svg = page.wait_for_selector(f'[id="user-defined-plot:{plot_id}"] .main-svg', timeout=30_000)
        assert svg.is_visible()
    thompson = page.inner_text('[id="user-defined-plot:auxopt-thompson"]')
    assert "Thompson task selection" in thompson and "helpful_0" in thompson
    assert "Mixing-ratio landscape" in page.inner_text('[id="user-defined-plot:auxopt-mixing"]')
    assert "AANG objective weights" in page.inner_text('[id="user-defined-plot:auxopt-aang"]')
    assert "ATTITTUD gradient parts" in page.inner_text('[id="user-defined-plot:auxopt-attittud"]')
    dev = page.inner_text('[id="user-defined-plot:auxopt-dev-curves"]')
    assert f"trial {study.best_trial.number} (best)" in dev
    assert not errors, errors

    target = (
        REPO / "docs" / "dashboard.png" if os.environ.get("AUXOPT_UPDATE_SCREENSHOT") else tmp_path / "dashboard.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 20_000

    # the note on the best configuration renders as markdown on the study's note page
    page.goto(f"{base}/dashboard/studies/{study._study_id}/note", timeout=60_000)
    page.wait_for_selector("text=The best configuration so far", timeout=30_000)
    assert f"trial {study.best_trial.number}" in page.inner_text("body")
    page.close()
