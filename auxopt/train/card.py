"""The model card of an exported model: the Hub's ``README.md``, YAML metadata above markdown.

It says what the model is for (the primary task, its labels, how to load it), how it was trained
(auxiliaries and their ratios, AANG's objectives and weights, ATTITTUD's settings, the seed), what
it scored (dev at the best step, test at that step), whether the auxiliary data was shown to help
(``auxopt verify``'s verdict, when there is one), the contamination check, and where it came from
(auxopt's version, the study and trial or the command).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from auxopt import records
from auxopt.stats import verdict_lines

#: TrainConfig.describe() keys shown in the settings table, in this order
SETTINGS = ("model", "max_steps", "batch_size", "max_length", "lr", "lr_schedule", "warmup_ratio", "seed")


def render(result: Any, *, name: str, source: Mapping[str, Any] | None = None, verdict: Mapping | None = None) -> str:
    """The card of ``result`` (a :class:`~auxopt.train.TrainResult` with its model) as text."""
    from huggingface_hub import EvalResult, ModelCardData

    from auxopt.version import __version__

    trained = result.model
    task, settings = trained.task, trained.settings
    metric = result.metric
    evals = [
        EvalResult(
            task_type="text-classification",
            dataset_type=task.name,
            dataset_name=task.name,
            dataset_split=split,
            metric_type=metric,
            metric_name=f"{split} {metric}",
            metric_value=round(float(value), 6),
        )
        for split, value in (("dev", result.best_dev), ("test", result.test_at_best))
        if value is not None
    ]
    methods = [m for m in ("aang", "attittud") if _plugin(settings, m)]
    aux = [t for t in settings.get("ratios", {}) if t != task.name]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["auxopt", "auxiliary-learning", *(["multi-task"] if aux else []), *methods],
        base_model=_base_model(settings.get("model")),
        model_name=name,
        eval_results=evals,
    )
    lines = [f"---\n{data.to_yaml()}\n---", f"# {name}", ""]
    kind = "regression" if task.kind == "regression" else f"{task.num_labels}-class classification"
    pair = " of text pairs" if task.is_pair else ""
    lines += [
        f"A {kind} model{pair} for **{task.name}**, trained with auxopt "
        + (f"together with the auxiliary task(s) {', '.join(f'`{t}`' for t in aux)}" if aux else "on its own data")
        + (" and AANG's generated objectives" if "aang" in methods else "")
        + (" with ATTITTUD's gradient decomposition" if "attittud" in methods else "")
        + "."
        + (f" Labels: {', '.join(f'`{x}`' for x in task.labels)}." if task.labels else ""),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classify = pipeline("text-classification", model="{name}", trust_remote_code=True, truncation=True)',
        'classify({"text": "first text", "text_pair": "second text"})'
        if task.is_pair
        else 'classify("a text to classify")',
        "```",
        "",
        f"`truncation=True` cuts inputs at {trained.max_length} tokens, as in training. The architecture "
        "(`modeling_auxopt.py`, beside the weights) is the encoder, mean pooling over the real tokens "
        "and a linear head; where auxopt is installed, `import auxopt.models.modeling_auxopt` registers it "
        "and `trust_remote_code` is not needed."
        + (" The score of a regression task is the prediction itself." if task.kind == "regression" else ""),
        "",
        "## Results",
        "",
        f"| split | {metric} |",
        "|---|---|",
        f"| dev (best of {len(result.curve)} evaluations, step {result.best_step}) | {result.best_dev:.4f} |",
    ]
    if result.test_at_best is not None:
        lines.append(f"| test (at the best dev step) | {result.test_at_best:.4f} |")
    lines += ["", *_verdict_lines(verdict, metric), "", *_training_lines(result, settings, task.name)]
    lines += ["", *_contamination_lines(trained.contamination)]
    lines += ["", "## Provenance", ""]
    lines += [f"- auxopt {__version__}, exported {_dt.date.today().isoformat()}"]
    for key, value in (source or {}).items():
        lines.append(f"- {key}: `{value}`")
    return "\n".join(lines) + "\n"


def _base_model(model: str | None) -> str | None:
    from auxopt.models.encoder import MINILM_ALIASES, MINILM_HUB_NAME

    if not model or model == "tiny":
        return None
    if model.lower() in MINILM_ALIASES:
        return MINILM_HUB_NAME
    return model if "/" in model and not model.startswith((".", "/", "~")) else None


def _plugin(settings: Mapping, method: str) -> Mapping | None:
    """The AANG (``objectives``) or ATTITTUD (``decomposer``) settings of a run, if it had them."""
    key = "objectives" if method == "aang" else "decomposer"
    found = settings.get(key)
    kind = str((found or {}).get("kind", "")).lower() if isinstance(found, Mapping) else ""
    if method == "aang":
        return found if kind == "aang" else None
    return found if isinstance(found, Mapping) and kind not in ("upgrad", "pcgrad", "jacobiandescent") else None


def _verdict_lines(verdict: Mapping | None, metric: str) -> list[str]:
    lines = ["## Did the auxiliary data help?", ""]
    if not verdict:
        return lines + [
            "Not verified yet. A search's best dev score is the maximum of many noisy runs; "
            "`auxopt verify STUDY.py` trains the chosen configuration and the primary task alone "
            "with the same fresh seeds and measures the paired difference."
        ]
    if not verdict.get("alone"):
        seeds = ", ".join(str(s) for s in verdict.get("seed_list", []))
        lines += [
            f"`auxopt verify` trained this configuration and the primary task alone with the same "
            f"{verdict['seeds']} fresh seeds ({seeds}; study `{verdict.get('study')}`):",
            "",
        ]
    return lines + verdict_lines(verdict)


def _training_lines(result: Any, settings: Mapping, primary: str) -> list[str]:
    ratios = settings.get("ratios", {})
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines.append(f"| primary task | `{primary}` |")
    aux = {t: r for t, r in ratios.items() if t != primary}
    lines.append(
        "| auxiliary tasks (mixing ratio, primary 1) | "
        + (", ".join(f"`{t}` {r:g}" for t, r in aux.items()) if aux else "none")
        + " |"
    )
    schedule = settings.get("schedule")
    if schedule not in (None, "auto"):
        lines.append(f"| task schedule | `{schedule if isinstance(schedule, str) else schedule.get('kind')}` |")
    for key in SETTINGS:
        if key in settings:
            value = settings[key]
            lines.append(f"| {key} | `{f'{value:.4g}' if isinstance(value, float) else value}` |")
    lines.append(f"| steps trained | {result.steps} (best dev at {result.best_step}) |")
    lines.append(f"| examples seen | {', '.join(f'{t}: {n}' for t, n in result.examples.items())} |")
    aang = _plugin(settings, "aang")
    if aang:
        top = result.extra.get(records.AANG_TOP) or []
        weights = ", ".join(f"`{o}` {w:.3f}" for o, w in top[:8]) or "fixed weights"
        lines.append(f"| AANG objectives (final weights) | {weights} |")
    attittud = _plugin(settings, "attittud")
    if attittud:
        shown = ", ".join(f"{k}={v}" for k, v in attittud.items() if v is not None and k != "kind")
        lines.append(f"| ATTITTUD | {shown} |")
    return lines


def _contamination_lines(report: Mapping | None) -> list[str]:
    lines = ["## Contamination check", ""]
    if not report:
        return lines + ["Not checked."]
    found = [p for p in report.get("pairs", []) if p.get("count")]
    checked = sorted({p["source"] for p in report.get("pairs", [])})
    if not found:
        return lines + [
            f"No train example of {', '.join(f'`{c}`' for c in checked)} appears in the primary's "
            f"dev or test split ({report.get('normalization', 'normalised exact match')})."
        ]
    lines += ["| primary split | shares with | examples | fraction |", "|---|---|---|---|"]
    for p in found:
        lines.append(f"| {p['split']} | `{p['source']}` train | {p['count']} of {p['size']} | {p['fraction']:.1%} |")
    return lines + ["", "Scores on the primary then partly measure memorised examples."]
