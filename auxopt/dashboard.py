"""auxopt's plots in optuna-dashboard, and the dashboard server itself.

:func:`publish` stores auxopt's figures (:mod:`auxopt.plots`) on a study with optuna-dashboard's
``save_plotly_graph_object`` — they appear on the study's page as custom plots — and a markdown note
(``save_note``) that says in words what the best configuration is. :class:`PublishCallback` does it
from an Optuna callback every few trials (never every training step: a figure is a few kB of study
attributes). :func:`serve` runs optuna-dashboard on a storage with the artifact store attached.

Each figure has a fixed id, so publishing again replaces it; optuna-dashboard renders figure
``<id>`` in the element ``user-defined-plot:<id>``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auxopt.errors import AuxoptError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

logger = logging.getLogger("auxopt")

#: figure id → (what it shows, the function that draws it from a study)
PLOTS: dict[str, str] = {
    "auxopt-thompson": "Thompson posteriors per task and pulls over time",
    "auxopt-mixing": "mixing-ratio landscape (GP mean along each ratio, observed points)",
    "auxopt-aang": "AANG objective weights over steps and the top objectives",
    "auxopt-attittud": "ATTITTUD gradient-part norms (+, −, ⊥) over steps",
    "auxopt-dev-curves": "primary dev curve per trial",
}


def figures(study: optuna.Study, sampler: Any = None) -> dict[str, Any]:
    """``{figure id: plotly figure}`` for every auxopt plot this study has data for."""
    from auxopt import plots

    builders: dict[str, Callable[[], Any]] = {
        "auxopt-thompson": lambda: plots.plot_thompson(study, sampler),
        "auxopt-mixing": lambda: plots.plot_mixing_landscape(study),
        "auxopt-aang": lambda: plots.plot_aang_weights(study),
        "auxopt-attittud": lambda: plots.plot_grad_parts(study),
        "auxopt-dev-curves": lambda: plots.plot_dev_curves(study),
    }
    out = {}
    for key, build in builders.items():
        try:
            out[key] = build()
        except plots.NoData:
            continue
        except AuxoptError as e:  # a malformed record: say so, publish the rest
            logger.warning("auxopt: not publishing %s: %s", key, e)
    return out


def publish(study: optuna.Study, sampler: Any = None) -> list[str]:
    """Store auxopt's figures and the best-configuration note on ``study``; return the figure ids.

    ``sampler`` is the study's :class:`~auxopt.samplers.ThompsonTaskSampler`, if any (default:
    ``study.sampler``); it gives the exact Beta posterior for the Thompson plot.
    """
    from optuna_dashboard import save_note, save_plotly_graph_object

    from auxopt.plots import best_summary

    published = []
    for key, fig in figures(study, sampler).items():
        save_plotly_graph_object(study, fig, graph_object_id=key)
        published.append(key)
    note = best_summary(study)
    if _current_note(study) != note:
        save_note(study, note)
    return published


def _current_note(study: optuna.Study) -> str:
    from optuna_dashboard import get_note

    try:
        return get_note(study)
    except Exception:  # an unreadable note is replaced
        return ""


class PublishCallback:
    """An Optuna callback that publishes auxopt's plots every ``every`` finished trials.

    Pass it to ``study.optimize(callbacks=[...])``; :meth:`auxopt.StudySpec.optimize` adds one (and
    publishes once more at the end). A failure to publish is logged, never raised: plots must not
    stop a search.
    """

    def __init__(self, every: int = 5, sampler: Any = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise AuxoptError(f"publish every must be a whole number >= 1, not {every!r}")
        self.every, self.sampler = every, sampler
        self._seen = 0
        self._published_at = 0
        self._lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._lock:
            self._seen += 1
            if self._seen % self.every:
                return
            self._published_at = self._seen
        self.publish(study)

    def flush(self, study: optuna.Study) -> list[str]:
        """Publish if trials finished since the last publication (at the end of a run)."""
        with self._lock:
            if self._seen == self._published_at:
                return []
            self._published_at = self._seen
        return self.publish(study)

    def publish(self, study: optuna.Study) -> list[str]:
        try:
            return publish(study, self.sampler)
        except Exception as e:  # noqa: BLE001 - plots are a side show
            logger.warning("auxopt: publishing plots to the dashboard failed: %s: %s", type(e).__name__, e)
            return []


# -- the server -------------------------------------------------------------------------------------
def make_app(url: str, artifacts: str | Path | None = None):
    """optuna-dashboard's WSGI app for storage ``url`` with the artifact store attached."""
    import optuna_dashboard

    from auxopt.storage import artifact_dir, artifact_store, open_storage

    storage = open_storage(url)
    folder = Path(artifacts) if artifacts is not None else artifact_dir(url)
    store = None
    if folder is not None and (artifacts is not None or folder.is_dir()):
        store = artifact_store(folder)
        _list_only_stored_artifacts(storage, store)
    return optuna_dashboard.wsgi(storage, artifact_store=store), folder if store else None


def _list_only_stored_artifacts(storage, store) -> None:
    """Make ``storage`` (an RDB or journal storage that only the dashboard uses) give trials without
    the artifact records whose file is not in ``store``, so that optuna-dashboard neither lists them
    nor fails (HTTP 500) serving them. auxopt deletes a checkpoint's record with its file on SQLite
    and PostgreSQL, but a journal file cannot delete one, a killed worker can leave a record whose
    file was never written, and older studies kept the records of deleted checkpoints.

    The object's class becomes a subclass of its own, so optuna-dashboard's
    ``isinstance(storage, RDBStorage)`` checks still hold."""
    base = type(storage)

    class DashboardView(base):  # the same object layout as ``base``: __class__ can be assigned
        def get_trial(self, trial_id: int):
            return _stored_only(super().get_trial(trial_id), store)

        def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None):
            trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
            return [_stored_only(t, store) for t in trials]

        def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
            return self.get_trial(trial_id).system_attrs

    DashboardView.__name__ = DashboardView.__qualname__ = f"DashboardView{base.__name__}"
    storage.__class__ = DashboardView


def _stored_only(trial, store):
    """``trial``, or a copy of it without the artifact records whose file ``store`` lacks."""
    import copy

    from optuna.artifacts.exceptions import ArtifactNotFound

    from auxopt._optuna import dashboard_artifacts_attr_prefix

    prefix = dashboard_artifacts_attr_prefix()
    gone = set()
    for key in trial.system_attrs:
        if key.startswith(prefix):
            try:
                store.open_reader(key[len(prefix) :]).close()
            except ArtifactNotFound:
                gone.add(key)
    if not gone:
        return trial
    trial = copy.copy(trial)  # the storage's own copy stays as it is
    trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in gone}
    return trial


def serve(url: str, host: str = "127.0.0.1", port: int = 8080, artifacts: str | Path | None = None) -> None:
    """Run optuna-dashboard on ``url`` until interrupted (binds to loopback by default)."""
    from wsgiref.simple_server import make_server

    if not 0 < port < 65536:
        raise AuxoptError(f"port must be between 1 and 65535, not {port}")
    app, folder = make_app(url, artifacts)
    try:
        server = make_server(host, port, app, handler_class=_QuietHandler())
    except OSError as e:
        raise AuxoptError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    print(
        f"optuna-dashboard on http://{host}:{port}/ (storage {_mask(url)}"
        + (f", artifacts {folder}" if folder else "")
        + "); Ctrl-C stops it",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _mask(url: str) -> str:
    from auxopt.storage import mask_url

    return mask_url(url)


def _QuietHandler():
    from wsgiref.simple_server import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.debug(format, *args)

    return Handler
