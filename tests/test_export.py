"""A trained run as a transformers model folder: ``train(keep_model=True)`` and ``save_pretrained``.

The folder must load with ``transformers.pipeline`` in a fresh process, where auxopt is not
imported (remote code), and give back the metric the run recorded; writing it must be all or nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from auxopt import load_task
from auxopt.errors import AuxoptError
from auxopt.train import TrainConfig, train

TINY = {"max_steps": 40, "eval_every": 20, "max_length": 32, "batch_size": 16, "device": "cpu"}

#: run in a fresh interpreter: transformers only, no auxopt import; prints each folder's outputs
PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline
    outputs = {}
    for folder, inputs in json.load(open(sys.argv[1])).items():
        classify = pipeline("text-classification", model=folder, trust_remote_code=True, truncation=True, device="cpu")
        outputs[folder] = [[o["label"], o["score"]] for o in classify(inputs, batch_size=32)]
    assert "auxopt" not in sys.modules, "the folder must load without auxopt"
    print(json.dumps(outputs))
    """
)


def _pipeline_outputs(inputs: dict, tmp_path) -> dict:
    """folder → the pipeline's [label, score] per input, from one fresh interpreter."""
    texts = tmp_path / "inputs.json"
    texts.write_text(json.dumps(inputs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "m")}
    done = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, str(texts)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_exported_models_give_the_recorded_metric_through_a_pipeline_in_a_fresh_process(shared_data, tmp_path):
    """cr: single texts with a test split; qnli: text pairs with a test split; stsb: regression
    (no test split upstream: the dev score)."""
    import numpy as np

    runs, inputs = {}, {}
    for name in ("cr", "qnli", "stsb"):
        task = load_task(name, max_train=300)
        result = train(TrainConfig(task, **TINY), keep_model=True)
        folder = str(result.save_pretrained(tmp_path / name))
        split_name = "test" if task.test is not None else "dev"
        split = task.split(split_name)
        recorded = result.test_at_best if split_name == "test" else result.best_dev
        runs[folder] = (task, split, recorded)
        inputs[folder] = (
            [{"text": a, "text_pair": b} for a, b in zip(split.texts, split.pairs, strict=True)]
            if split.pairs is not None
            else list(split.texts)
        )
    outputs = _pipeline_outputs(inputs, tmp_path)
    for folder, (task, split, recorded) in runs.items():
        if task.kind == "regression":
            predictions = np.array([score for _, score in outputs[folder]])
        else:
            predictions = np.array([task.labels.index(label) for label, _ in outputs[folder]])
        assert task.score(split.labels, predictions) == pytest.approx(recorded, abs=1e-6), task.name
        card = (tmp_path / task.name / "README.md").read_text()
        assert card.startswith("---\n") and "pipeline_tag: text-classification" in card
        assert f"**{task.name}**" in card and "## Contamination check" in card
        config = json.loads((tmp_path / task.name / "config.json").read_text())
        kind = "regression" if task.kind == "regression" else "single_label_classification"
        assert config["problem_type"] == kind
        tokenizer = json.loads((tmp_path / task.name / "tokenizer_config.json").read_text())
        assert tokenizer["model_max_length"] == TINY["max_length"]  # the pipeline truncates as training did


def test_the_folder_holds_the_primary_head_only_and_truncates_at_the_trained_length(suite, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import auxopt.models.modeling_auxopt  # noqa: F401  registers the architecture: no remote code

    aux = suite.auxiliaries[0]
    settings = {**TINY, "max_steps": 10, "eval_every": 5}
    config = TrainConfig(suite.primary, (aux,), ratios={"primary": 1, aux.name: 1}, on_overlap="ignore", **settings)
    result = train(config, keep_model=True)
    folder = result.save_pretrained(tmp_path / "m", source={"study": "s"})
    weights = load_file(folder / "model.safetensors")
    assert not any(k.startswith("heads.") or "pooler" in k for k in weights)
    assert weights["classifier.weight"].shape[0] == suite.primary.num_labels
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(model).__name__ == "AuxoptForSequenceClassification"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    long = " ".join(["word"] * 200)
    assert len(tokenizer(long, truncation=True)["input_ids"]) == TINY["max_length"]
    card = (folder / "README.md").read_text()
    assert suite.auxiliaries[0].name in card and "Not verified yet" in card and "study: `s`" in card


def test_saving_is_all_or_nothing(suite, tmp_path, monkeypatch):
    from auxopt.train import export as export_module

    result = train(TrainConfig(suite.primary, **{**TINY, "max_steps": 4, "eval_every": 2}), keep_model=True)
    with pytest.raises(AuxoptError, match="has no model"):
        train(TrainConfig(suite.primary, **{**TINY, "max_steps": 2, "eval_every": 2})).save_pretrained(tmp_path / "x")

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    with pytest.raises(AuxoptError, match="exists and is not empty.*--force"):
        result.save_pretrained(taken)
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]

    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # the read-back check fails: nothing may be left
    with pytest.raises(AuxoptError, match="differ from the trained model"):
        result.save_pretrained(taken, force=True)
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no staging folder left behind

    monkeypatch.undo()
    result.save_pretrained(taken, force=True)
    assert (taken / "model.safetensors").is_file() and not (taken / "mine.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuxoptError, match="is a file"):
        result.save_pretrained(tmp_path / "file", force=True)
