"""``auxopt studies``, ``show`` and ``dashboard``: what a storage holds, read without changing it."""

from __future__ import annotations

import argparse
from pathlib import Path


def summary(study, url: str) -> str:
    """A short, readable report of a study's state and best trial: its tasks, ratios, dev and test
    metric, its parameters, where the storage is and how to open the dashboard."""
    import optuna

    from auxopt.storage import retried_trials

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    retried = {n for t in trials for n in retried_trials(t)}  # interrupted, and queued again
    resumed = sum(t.state == optuna.trial.TrialState.FAIL and t.number in retried for t in trials)
    lines = [
        f"study {study.study_name!r}: {states[optuna.trial.TrialState.COMPLETE]} complete, "
        f"{states[optuna.trial.TrialState.PRUNED]} pruned, {states[optuna.trial.TrialState.FAIL] - resumed} failed"
        + (f", {resumed} interrupted and resumed" if resumed else ""),
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
    else:
        lines.append(_best_table(best))
    lines.append(f"storage: {url}")
    lines.append(f"dashboard: auxopt dashboard --storage {url}   (or: optuna-dashboard {url})")
    return "\n".join(lines)


def _best_table(best) -> str:
    """The best trial as a two-column table."""
    from auxopt import records
    from auxopt.progress import fmt_value

    metric = best.user_attrs.get(records.METRIC, "value")
    test = best.user_attrs.get(records.TEST_METRIC)
    config = best.user_attrs.get(records.CONFIG, {})
    ratios = config.get("ratios") or {}
    rows = [("best trial", f"#{best.number}")]
    if config.get("primary"):
        aux = [k for k in ratios if k != config["primary"]]
        rows.append(("tasks", ", ".join([config["primary"], *aux]) + ("" if aux else " (alone)")))
    if ratios:
        rows.append(("ratios", ", ".join(f"{k}: {_fmt(v)}" for k, v in ratios.items())))
    rows.append((f"dev {metric}", fmt_value(best.value)))
    if test is not None:
        rows.append((f"test {metric}", fmt_value(float(test))))
    rows += [(key, _fmt(value)) for key, value in best.params.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt(value) -> str:
    from auxopt.progress import fmt_param

    return fmt_param(value)


def studies(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.storage import mask_url, open_existing

    storage = open_existing(args.storage)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {mask_url(args.storage)}")
        return 0
    from auxopt.progress import fmt_value
    from auxopt.storage import retried_trials

    S = optuna.trial.TrialState
    header = ("study", "complete", "pruned", "failed", "resumed", "running", "best", "state")
    rows = []
    for s in summaries:
        trials = storage.get_all_trials(storage.get_study_id_from_name(s.study_name), deepcopy=False)
        count = {st: sum(t.state == st for t in trials) for st in S}
        retried = {n for t in trials for n in retried_trials(t)}  # failed when interrupted, run again
        resumed = sum(t.state == S.FAIL and t.number in retried for t in trials)
        best = fmt_value(s.best_trial.value) if s.best_trial is not None else "-"
        state = "running" if count[S.RUNNING] else ("empty" if not trials else "idle")
        rows.append(
            (
                s.study_name,
                count[S.COMPLETE],
                count[S.PRUNED],
                count[S.FAIL] - resumed,
                resumed,
                count[S.RUNNING],
                best,
                state,
            )
        )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print(
            "  ".join(
                str(v).ljust(w) if i in (0, 7) else str(v).rjust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    return 0


def show(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.errors import AuxoptError
    from auxopt.storage import mask_url, open_existing

    name, url = args.study, args.storage
    if name.endswith(".py") and Path(name).is_file():
        from auxopt.study_file import load_study_file

        spec = load_study_file(name)
        url = spec.storage_url(url)
        name = spec.name
        if hasattr(spec, "stage2_name"):  # a pipeline: its last stage that exists
            found = [s.study_name for s in optuna.get_all_study_summaries(open_existing(url))]
            name = spec.stage2_name if spec.stage2_name in found else spec.stage1_name
    if not url:
        raise AuxoptError(f"auxopt show {name}: say where the study is with --storage URL")
    storage = open_existing(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise AuxoptError(
            f"no study {name!r} in {mask_url(url)}; it has {names} (auxopt studies --storage URL lists them)"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    print(summary(study, mask_url(url)))
    return 0


def dashboard(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.dashboard import publish, serve
    from auxopt.storage import open_existing

    storage = open_existing(args.storage)
    if args.publish:
        for s in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            published = publish(study)
            print(f"published {len(published)} plot(s) to {s.study_name!r}")
    try:
        serve(args.storage, host=args.host, port=args.port, artifacts=args.artifacts)
    except KeyboardInterrupt:
        print("dashboard stopped")
    return 0
