"""``auxopt verify``: did the auxiliary data really help? The verdict on a search's choice.

A search's best dev score is the maximum of many noisy runs, so it overstates what the chosen
configuration gives (the winner's curse). :func:`verify` trains the chosen configuration and the
primary task alone — the same run without its auxiliary tasks and step plugin, every other setting
as chosen — with ``seeds`` fresh paired seeds (never the seed of the search's own run), and reports
the paired difference of their dev scores, and of their test scores at the best dev step where the
primary has a test split: the mean, its 95 % interval and wins/ties/losses
(:func:`auxopt.stats.paired_difference`, the payoff benchmark's statistics).

The runs are the trials of a companion study, ``<search>.verify``, in the search's storage: killed,
it continues where it stopped; several workers share it (each (arm, seed) run is proposed once,
under the study's lock); a run whose settings already finished is never repeated. The verdict is
stored on the chosen trial's study (user_attr ``verdict``), shown in its optuna-dashboard note, and
written into the model card by ``auxopt export``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from auxopt import _optuna, records
from auxopt.errors import AuxoptError
from auxopt.outcome.chosen import Chosen
from auxopt.progress import fmt_value
from auxopt.propose import settings_key
from auxopt.stats import PairedDifference, paired_difference, verdict_lines
from auxopt.study import StudySpec
from auxopt.train import TrainConfig

logger = logging.getLogger("auxopt")
ARMS = ("chosen", "primary-only")
DEFAULT_SEEDS = 5
#: the TrainConfig fields a companion trial takes from the run it repeats (the tasks are the study's)
_SKIP = ("primary", "auxiliaries", "on_overlap", "checkpoint", "objectives", "decomposer")


def fresh_seeds(search_seed: int, n: int) -> list[int]:
    """``n`` seeds after the search's own (whose run chose the configuration, so it is left out)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise AuxoptError(f"--seeds must be at least 2 (an interval needs two paired seeds), not {n!r}")
    return [search_seed + 1 + i for i in range(n)]


class VerifyStudy(StudySpec):
    """The companion study of :func:`verify`: trials with parameters ``arm`` (``"chosen"`` or
    ``"primary-only"``) and ``seed``, proposed in pairs, seed by seed, each (arm, seed) once."""

    def __init__(self, chosen: Chosen, seeds: Sequence[int], **kwargs: Any):
        self.chosen, self.seeds = chosen, list(seeds)
        arms = {"chosen": _fields(chosen.config), "primary-only": _fields(chosen.primary_only())}
        self.arms = arms

        def space(trial: optuna.Trial) -> dict:
            arm = trial.suggest_categorical("arm", list(ARMS))
            seed = trial.suggest_int("seed", 0, 2**31 - 1)
            return {**arms[arm], "seed": seed}

        config = chosen.config
        super().__init__(
            name=f"{chosen.name}.verify",
            primary=config.primary,
            auxiliaries=tuple(config.auxiliaries),
            space=space,
            sampler=optuna.samplers.RandomSampler(seed=0),
            pruner=optuna.pruners.NopPruner(),
            n_trials=2 * len(self.seeds),
            storage=chosen.url,
            seed=0,
            user_attrs={"verifies": {"study": chosen.study.study_name, "trial": chosen.trial.number}},
            on_overlap="ignore",
            distinct=False,
            **kwargs,
        )

    def settings(self, arm: str, seed: int) -> str:
        """The settings key of the run of ``arm`` with ``seed``."""
        return settings_key(self.config_for({**self.arms[arm], "seed": seed}).describe())

    def order(self) -> list[tuple[str, int]]:
        return [(arm, seed) for seed in self.seeds for arm in ARMS]

    def finished(self, study: optuna.Study) -> dict[tuple[str, int], optuna.trial.FrozenTrial]:
        """(arm, seed) → the complete trial that ran exactly that run."""
        wanted = {self.settings(arm, seed): (arm, seed) for arm, seed in self.order()}
        out = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            key = wanted.get(settings_key(t.user_attrs.get(records.CONFIG)))
            if key is not None and key not in out:
                out[key] = t
        return out

    def missing(self, study: optuna.Study) -> list[tuple[str, int]]:
        """The runs not yet held by the study (finished, running or queued), in order."""
        done = set(self.finished(study))
        busy = set()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            # the proposed pair: a trial that has suggested its arm but not yet its seed would
            # look free, and another worker would run it twice (and one pair never)
            params = _optuna.proposed_params(t)
            if "arm" in params and "seed" in params:
                busy.add((params["arm"], int(params["seed"])))
        return [pair for pair in self.order() if pair not in done and pair not in busy]

    def proposer(self) -> Callable[[optuna.Study], dict | None]:
        def propose(study: optuna.Study) -> dict | None:
            left = self.missing(study)
            return {"arm": left[0][0], "seed": left[0][1]} if left else None

        return propose


def _fields(config: TrainConfig) -> dict[str, Any]:
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in _SKIP}
    out["ratios"] = config.active_ratios()
    return out


def verify(
    chosen: Chosen,
    seeds: int = DEFAULT_SEEDS,
    *,
    progress: Any = None,
    workers: Callable[[VerifyStudy, int], None] | None = None,
) -> dict:
    """Run (or continue) the paired runs of ``chosen`` and the primary alone; return the verdict
    (also stored on the chosen trial's study as the user_attr ``verdict``).

    ``workers(spec, until)``, when given, runs the missing trials in other processes (``auxopt
    verify --workers N``) instead of this one."""
    metric = chosen.trial.user_attrs.get(records.METRIC, chosen.config.primary.metric)
    base = {
        "of": {"study": chosen.study.study_name, "trial": chosen.trial.number},
        "metric": metric,
        "search_dev": chosen.dev,
        "search_test": chosen.test,
        "chosen": {"ratios": chosen.config.active_ratios(), "plugin": _plugin_name(chosen.config)},
    }
    if chosen.alone:
        verdict = {
            **base,
            "alone": True,
            "seeds": 0,
            "seed_list": [],
            "summary": "The search chose the primary task alone: there is no auxiliary data to verify.",
        }
        _store(chosen.study, verdict)
        return verdict
    seed_list = fresh_seeds(chosen.seed, seeds)
    spec = VerifyStudy(chosen, seed_list)
    study = spec.load_study(chosen.url)
    left = spec.missing(study)
    if left:
        from auxopt.worker import requested

        until = requested(study.get_trials(deepcopy=False)) + len(left)
        logger.info(
            "auxopt verify: %d run(s) to go in study %r (%d paired seeds: %s)",
            len(left),
            spec.name,
            len(seed_list),
            ", ".join(map(str, seed_list)),
        )
        if workers is not None:
            workers(spec, until)
        else:
            spec.optimize(until=until, storage=chosen.url, progress=progress, publish_every=None)
        study = spec.load_study(chosen.url)
    runs = spec.finished(study)
    table: dict[str, dict[str, dict]] = {arm: {} for arm in ARMS}
    for (arm, seed), t in sorted(runs.items(), key=lambda kv: kv[0][1]):
        table[arm][str(seed)] = {"dev": float(t.value), "test": t.user_attrs.get(records.TEST_METRIC)}
    diffs = {}
    for split in ("dev", "test"):
        diff = paired_difference(
            {s: v[split] for s, v in table["chosen"].items()}, {s: v[split] for s, v in table["primary-only"].items()}
        )
        diffs[split] = None if diff is None else diff.to_dict()
    if diffs["dev"] is None:
        raise AuxoptError(f"study {spec.name!r} has no finished pair of runs yet; run auxopt verify again")
    verdict = {
        **base,
        "study": spec.name,
        "seed_list": seed_list,
        "seeds": diffs["dev"]["n"],
        "runs": table,
        **diffs,
        "date": _dt.date.today().isoformat(),
    }
    verdict["summary"] = summary(verdict)
    _store(chosen.study, verdict)
    study.set_user_attr(records.VERDICT, verdict)
    return verdict


def _plugin_name(config: TrainConfig) -> str | None:
    return None if config.plugin is None else type(config.plugin).__name__


def summary(verdict: Mapping[str, Any]) -> str:
    """The verdict in two sentences: whether the chosen configuration beats the primary alone on the
    held-out split (test where there is one, else dev), and how optimistic the search's score was."""
    split = "test" if verdict.get("test") else "dev"
    d = PairedDifference.from_dict(verdict[split])
    metric = verdict.get("metric", "")
    if d.resolved and d.low > 0:
        text = (
            f"Verified: the chosen configuration beats the primary task alone on {split} {metric} by "
            f"{d.mean:+.4f} (95 % interval {d.interval()}, {d.n} paired seeds)."
        )
    elif d.resolved:
        text = (
            f"The chosen configuration is worse than the primary task alone on {split} {metric}: "
            f"{d.mean:+.4f} (95 % interval {d.interval()}, {d.n} paired seeds); train the primary alone."
        )
    else:
        text = (
            f"Not shown: the 95 % interval of the {split} {metric} difference, {d.interval()}, crosses 0, so "
            f"{d.n} paired seeds cannot tell the chosen configuration from the primary task alone "
            f"(mean {d.mean:+.4f}; more seeds narrow it: --seeds {2 * d.n})."
        )
    dev = [v["dev"] for v in verdict.get("runs", {}).get("chosen", {}).values()]
    if dev and verdict.get("search_dev") is not None:
        mean = sum(dev) / len(dev)
        text += (
            f" The search's best dev score, {verdict['search_dev']:.4f}, is {verdict['search_dev'] - mean:+.4f} "
            f"from the chosen configuration's mean over fresh seeds, {mean:.4f}."
        )
    return text


def _store(study: optuna.Study, verdict: dict) -> None:
    study.set_user_attr(records.VERDICT, verdict)
    try:
        from auxopt.dashboard import publish

        publish(study)
    except Exception as e:  # noqa: BLE001 - the note is a side show; the verdict is stored
        logger.warning("auxopt: could not publish the verdict to the dashboard: %s: %s", type(e).__name__, e)


def report(verdict: Mapping[str, Any], chosen: Chosen) -> str:
    """The verdict for the terminal: the runs seed by seed, the paired differences, the summary."""
    lines = [f"verify {chosen.describe()} against the primary task alone"]
    runs = verdict.get("runs")
    if runs:
        metric = verdict["metric"]
        has_test = any(v.get("test") is not None for v in runs["chosen"].values())
        header = ["seed", f"dev {metric}: chosen", "alone", "Δ"]
        if has_test:
            header += [f"test {metric}: chosen", "alone", "Δ"]
        rows = [header]
        for seed in verdict["seed_list"]:
            a, b = runs["chosen"].get(str(seed)), runs["primary-only"].get(str(seed))
            if a is None or b is None:
                continue
            row = [str(seed), fmt_value(a["dev"]), fmt_value(b["dev"]), f"{a['dev'] - b['dev']:+.4f}"]
            if has_test and a.get("test") is not None and b.get("test") is not None:
                row += [fmt_value(a["test"]), fmt_value(b["test"]), f"{a['test'] - b['test']:+.4f}"]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(header))]
        lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    lines += [f"  {line}" if line else "" for line in verdict_lines(verdict)]
    return "\n".join(lines)
