"""Tasks: loading (real folders, files, memory, the hub code path), carving, errors, metrics, synthetic suite."""

from __future__ import annotations

import ast
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from auxopt.errors import AuxoptError
from auxopt.tasks import (
    Split,
    Task,
    build_task,
    data_dirs,
    get_metric,
    load_task,
    make_synthetic_suite,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# What each folder of ../shared/data must load as. Sizes come from PROVENANCE.md (parsed below).
# ``labels``: the label names, in class-id order, where a test checks them.
FOLDERS = {
    "chemprot": dict(kind="classification", pair=False, metric="accuracy", n_labels=13),
    "citation_intent": dict(kind="classification", pair=False, metric="macro_f1", n_labels=6),
    "hyperpartisan": dict(kind="classification", pair=False, metric="macro_f1", n_labels=2),
    "rte": dict(kind="classification", pair=True, metric="accuracy", n_labels=2),
    "cola": dict(kind="classification", pair=False, metric="mcc", n_labels=2),
    "wnli": dict(kind="classification", pair=True, metric="accuracy", n_labels=2),
    "stsb": dict(kind="regression", pair=True, metric="pearson", n_labels=1),
    "sst2": dict(kind="classification", pair=False, metric="accuracy", n_labels=2),
    "trec": dict(kind="classification", pair=False, metric="accuracy", n_labels=6),
    "subj": dict(kind="classification", pair=False, metric="accuracy", n_labels=2, labels=["0", "1"]),
    "mr": dict(kind="classification", pair=False, metric="accuracy", n_labels=2, labels=["0", "1"]),
    "cr": dict(kind="classification", pair=False, metric="accuracy", n_labels=2, labels=["0", "1"]),
    "mnli": dict(
        kind="classification",
        pair=True,
        metric="accuracy",
        n_labels=3,
        labels=["contradiction", "entailment", "neutral"],
    ),
    "qnli": dict(
        kind="classification", pair=True, metric="accuracy", n_labels=2, labels=["entailment", "not_entailment"]
    ),
}
NO_TEST_UPSTREAM = ("rte", "cola", "wnli", "stsb")


def _provenance_sizes() -> dict[str, dict[str, int]]:
    """Folder -> {'train': n, 'dev': n, ['test': n], ['domain.txt lines': n]} from PROVENANCE.md's table."""
    sizes = {}
    for line in (DATA / "PROVENANCE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[2].startswith("{"):
            sizes[cells[0]] = ast.literal_eval(cells[2])
    return sizes


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _dropped(task: Task, split: str) -> int:
    """How many examples ``labels=[...]`` dropped from a split (0 when none), read from ``carved``."""
    note = task.carved.get(f"dropped_{split}")
    return 0 if note is None else int(note.split()[0])


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """Hugging Face libraries offline, with the datasets cache under tmp_path.

    ``datasets`` and ``huggingface_hub`` read these variables when they are imported, so the values
    they already read are set as well.
    """
    import datasets
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")
    return tmp_path


def _records(n: int, labels=("neg", "pos"), pair: bool = False, prefix: str = "example") -> list[dict]:
    out = []
    for i in range(n):
        rec = {"text": f"{prefix} number {i}", "label": labels[i % len(labels)]}
        if pair:
            rec["text_pair"] = f"second text {i}"
        out.append(rec)
    return out


def _write_jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------- the real data folders


@pytest.mark.data
def test_every_data_folder_is_covered(data_dir):
    on_disk = {p.name for p in data_dir.iterdir() if p.is_dir()}
    assert on_disk == set(FOLDERS)
    assert set(_provenance_sizes()) == set(FOLDERS)


@pytest.mark.data
@pytest.mark.parametrize("folder", list(FOLDERS))
def test_load_data_folder(data_dir, folder):
    spec = FOLDERS[folder]
    sizes = _provenance_sizes()[folder]
    # the files hold what PROVENANCE.md says
    for split in ("train", "dev", "test"):
        path = data_dir / folder / f"{split}.jsonl"
        assert path.exists() == (split in sizes)
        if split in sizes:
            assert _lines(path) == sizes[split]

    task = load_task(folder)  # every folder is clean: no labels=[...] needed

    assert task.name == folder
    assert task.source == str(data_dir / folder)
    assert task.kind == spec["kind"]
    assert task.is_pair == spec["pair"]
    assert task.metric == spec["metric"]
    assert task.num_labels == spec["n_labels"]
    if "labels" in spec:
        assert task.labels == tuple(spec["labels"])
    if task.is_pair:
        assert all(len(s.pairs) == len(s) for s in (task.train, task.dev, task.test))
    if task.kind == "regression":
        assert task.labels == ()
        assert task.train.labels.dtype == np.float32
        assert 0.0 <= task.train.labels.min() and task.train.labels.max() <= 5.0
    else:
        for split in (task.train, task.dev, task.test):
            assert split.labels.dtype == np.int64
            assert split.labels.min() >= 0 and split.labels.max() < task.num_labels
        # every class occurs in train
        assert np.all(np.bincount(task.train.labels, minlength=task.num_labels) > 0)

    # sizes: nothing is dropped, what was loaded is what the files hold
    assert not any(key.startswith("dropped_") for key in task.carved)
    assert len(task.dev) == sizes["dev"]
    if "test" in sizes:
        assert "test" not in task.carved
        assert len(task.train) == sizes["train"]
        assert len(task.test) == sizes["test"]
    else:
        assert folder in NO_TEST_UPSTREAM
        assert len(task.train) + len(task.test) == sizes["train"]
        assert len(task.test) == round(sizes["train"] * 0.1)

    # domain text
    if "domain.txt lines" in sizes:
        assert folder in ("chemprot", "citation_intent")
        assert task.domain_text is not None
        lines = (data_dir / folder / "domain.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == sizes["domain.txt lines"]
        # one passage a line; blank lines are not passages
        assert task.domain_text == tuple(line.strip() for line in lines if line.strip())
        assert len(task.domain_text) > 0.9 * len(lines)
    else:
        assert task.domain_text is None

    described = task.describe()
    assert described["sizes"] == {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)}
    assert described["pair"] == spec["pair"]
    json.dumps(described)  # JSON-friendly


@pytest.mark.data
def test_real_texts_and_labels_round_trip(data_dir):
    raw = _read_jsonl(data_dir / "rte" / "dev.jsonl")
    task = load_task("rte")
    assert task.labels == ("entailment", "not_entailment")
    assert task.dev.texts == tuple(r["text"] for r in raw)
    assert task.dev.pairs == tuple(r["text_pair"] for r in raw)
    assert [task.labels[i] for i in task.dev.labels] == [r["label"] for r in raw]

    raw = _read_jsonl(data_dir / "stsb" / "dev.jsonl")
    task = load_task("stsb")
    np.testing.assert_allclose(task.dev.labels, [float(r["label"]) for r in raw], rtol=1e-6)


@pytest.mark.data
@pytest.mark.parametrize("folder", NO_TEST_UPSTREAM)
def test_test_split_carved_from_train(data_dir, folder):
    raw = _read_jsonl(data_dir / folder / "train.jsonl")
    task = load_task(folder)
    n_test = round(len(raw) * 0.1)
    assert task.carved == {"test": f"{n_test} examples (10%) carved from train with seed 0"}
    assert len(task.train) + len(task.test) == len(raw)
    # train and test partition the original train (as multisets: a few texts repeat)
    original = sorted(zip([r["text"] for r in raw], [r.get("text_pair", "") for r in raw], strict=True))
    carved = sorted(
        zip(
            task.train.texts + task.test.texts,
            (task.train.pairs or ("",) * len(task.train)) + (task.test.pairs or ("",) * len(task.test)),
            strict=True,
        )
    )
    assert carved == original
    # the dev split is the upstream one, not carved
    assert len(task.dev) == _lines(data_dir / folder / "dev.jsonl")


@pytest.mark.data
def test_carving_real_task_is_seeded(data_dir):
    a, b, c = load_task("rte", seed=0), load_task("rte", seed=0), load_task("rte", seed=1)
    assert a.test.texts == b.test.texts and a.train.texts == b.train.texts
    assert a.fingerprint == b.fingerprint
    assert a.test.texts != c.test.texts
    assert a.fingerprint != c.fingerprint
    assert c.carved["test"].endswith("seed 1")


def test_corrupt_labels_are_named_and_dropped_with_labels(tmp_path):
    # A binary task whose files hold a few rows with a word where the 0/1 label should be (as wrapped
    # source lines once did in subj and mr): train and test each have some, dev is clean.
    folder = tmp_path / "wrapped"
    train = _records(40, labels=("0", "1"), prefix="train")
    train[5]["label"], train[17]["label"], train[30]["label"] = "alas", "because", "alas"
    dev = _records(10, labels=("0", "1"), prefix="dev")
    test = _records(12, labels=("0", "1"), prefix="test")
    test[2]["label"], test[9]["label"] = "it", "then"
    for split, recs in (("train", train), ("dev", dev), ("test", test)):
        _write_jsonl(folder / f"{split}.jsonl", recs)

    with pytest.raises(AuxoptError) as info:
        load_task(folder)
    message = str(info.value)
    # train's stray words become classes of their own; the test split's words train never has
    assert "'wrapped'" in message and "test split" in message
    for bad in ("it", "then"):
        assert repr(bad) in message
    assert "train labels: ['0', '1', 'alas', 'because']" in message  # train's stray words are shown too
    assert "labels=" in message  # says how to fix it

    task = load_task(folder, labels=["0", "1"])
    assert task.labels == ("0", "1")
    assert _dropped(task, "train") == 3
    assert _dropped(task, "test") == 2
    assert "dropped_dev" not in task.carved  # dev is clean
    assert task.carved["dropped_train"] == "3 examples whose label is not one of ['0', '1']"
    assert (len(task.train), len(task.dev), len(task.test)) == (40 - 3, 10, 12 - 2)
    for split, recs in (("train", train), ("dev", dev), ("test", test)):
        clean = [r for r in recs if r["label"] in ("0", "1")]
        loaded = task.split(split)
        assert loaded.texts == tuple(r["text"] for r in clean)
        assert [task.labels[i] for i in loaded.labels] == [r["label"] for r in clean]
    assert "train number 5" not in task.train.texts and "test number 9" not in task.test.texts


@pytest.mark.data
def test_data_dirs_searches_every_folder_in_order(data_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("AUXOPT_DATA", f"{empty}{os.pathsep}{data_dir}")
    assert data_dirs() == [empty, data_dir]
    assert load_task("wnli").source == str(data_dir / "wnli")
    # an earlier folder wins
    _write_jsonl(empty / "wnli" / "train.jsonl", _records(20, labels=("0", "1"), pair=True))
    _write_jsonl(empty / "wnli" / "dev.jsonl", _records(4, labels=("0", "1"), pair=True))
    task = load_task("wnli")
    assert task.source == str(empty / "wnli")
    assert len(task.train) + len(task.test) == 20


# ---------------------------------------------------------------------------- other sources


def test_in_memory_records():
    task = load_task({"train": _records(50), "validation": _records(10, prefix="dev")}, name="mem", head="shared")
    assert task.source == "memory"
    assert task.head_name == "shared"
    assert task.labels == ("neg", "pos")
    assert task.dev.texts[0] == "dev number 0"  # 'validation' is the dev split
    assert len(task.train) + len(task.test) == 50 and len(task.test) == 5
    assert task.train.labels.tolist() == [int(t.rsplit(" ", 1)[1]) % 2 for t in task.train.texts]
    assert not task.is_pair


def test_in_memory_kind_inference_and_numeric_labels():
    # integer-valued labels are classes, sorted numerically (not as strings)
    recs = [{"text": f"t{i}", "label": i % 11} for i in range(44)]
    task = load_task({"train": recs, "dev": recs[:11]}, name="ints")
    assert task.kind == "classification"
    assert task.labels == tuple(str(i) for i in range(11))
    assert task.dev.labels.tolist() == list(range(11))
    # fractional labels are a regression
    recs = [{"text": f"t{i}", "label": i / 7} for i in range(30)]
    task = load_task({"train": recs, "dev": recs[:5], "test": recs[5:10]}, name="reg")
    assert task.kind == "regression" and task.metric == "pearson" and task.num_labels == 1
    np.testing.assert_allclose(task.dev.labels, [i / 7 for i in range(5)], rtol=1e-6)


def test_csv_tsv_and_json_files(tmp_path):
    texts = ['a "quoted", comma text', "plain text", "it's an apostrophe", "ünïcödé text"]
    train = [{"text": t, "label": lab} for t, lab in zip(texts * 5, ["yes", "no"] * 10, strict=True)]
    dev = train[:4]

    import pandas as pd

    csv_dir = tmp_path / "csv_task"
    csv_dir.mkdir()
    pd.DataFrame(train).to_csv(csv_dir / "train.csv", index=False)
    pd.DataFrame(dev).to_csv(csv_dir / "validation.csv", index=False)
    pd.DataFrame(dev).to_csv(csv_dir / "test.csv", index=False)

    tsv_dir = tmp_path / "tsv_task"
    tsv_dir.mkdir()
    for split, recs in (("train", train), ("dev", dev)):
        lines = ["text\tlabel"] + [f"{r['text']}\t{r['label']}" for r in recs]
        (tsv_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    json_dir = tmp_path / "json_task"
    json_dir.mkdir()
    (json_dir / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (json_dir / "dev.json").write_text(json.dumps(dev), encoding="utf-8")

    for folder, has_test in ((csv_dir, True), (tsv_dir, False), (json_dir, False)):
        task = load_task(folder)
        assert task.name == folder.name
        assert task.labels == ("no", "yes")
        assert task.dev.texts == tuple(texts)
        assert task.dev.labels.tolist() == [1, 0, 1, 0]
        assert ("test" in task.carved) != has_test
        assert len(task.train) + (0 if has_test else len(task.test)) == len(train)
        assert set(task.train.texts) <= set(texts)

    # csv labels are read as strings: a numeric regression column still becomes floats
    reg_dir = tmp_path / "reg_csv"
    reg_dir.mkdir()
    pd.DataFrame(
        {"sentence1": ["a", "b", "c"] * 4, "sentence2": ["x", "y", "z"] * 4, "label": ["0.5", "4.25", "3"] * 4}
    ).to_csv(reg_dir / "train.csv", index=False)
    pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["x", "y"], "label": ["1.5", "2"]}).to_csv(
        reg_dir / "dev.csv", index=False
    )
    task = load_task(reg_dir)
    assert task.kind == "regression" and task.is_pair
    assert task.dev.pairs == ("x", "y")
    np.testing.assert_allclose(task.dev.labels, [1.5, 2.0])


def test_max_train_subset():
    task = load_task({"train": _records(100), "dev": _records(10), "test": _records(10)}, name="m", max_train=30)
    assert len(task.train) == 30
    assert "30" in task.carved["train"]
    again = load_task({"train": _records(100), "dev": _records(10), "test": _records(10)}, name="m", max_train=30)
    assert task.train.texts == again.train.texts


def test_carving_is_deterministic():
    records = {"train": _records(200)}
    a = load_task(records, name="c", seed=3)
    b = load_task(records, name="c", seed=3)
    c = load_task(records, name="c", seed=4)
    assert set(a.carved) == {"dev", "test"}
    assert (len(a.train), len(a.dev), len(a.test)) == (160, 20, 20)
    assert a.dev.texts == b.dev.texts and a.test.texts == b.test.texts and a.train.texts == b.train.texts
    assert a.dev.texts != c.dev.texts
    assert a.test.texts != c.test.texts
    # the three splits partition the original train, each keeping the original order
    everything = a.train.texts + a.dev.texts + a.test.texts
    assert sorted(everything) == sorted(r["text"] for r in records["train"])
    for split in (a.train, a.dev, a.test):
        order = [int(t.rsplit(" ", 1)[1]) for t in split.texts]
        assert order == sorted(order)
    # fractions are honoured
    d = load_task(records, name="c", dev_fraction=0.25, test_fraction=0.05)
    assert (len(d.dev), len(d.test)) == (50, 10)


# ---------------------------------------------------------------------------- errors


def test_error_unknown_task_name(tmp_path, monkeypatch, offline_hub):
    monkeypatch.setenv("AUXOPT_DATA", str(tmp_path))
    with pytest.raises(AuxoptError, match=r"unknown task 'no_such_task_xyz'.*not a folder"):
        load_task("no_such_task_xyz")


def test_error_nonexistent_path(tmp_path):
    with pytest.raises(AuxoptError, match=r"task folder .*missing.* does not exist"):
        load_task(str(tmp_path / "missing"))
    with pytest.raises(AuxoptError, match="does not exist"):
        load_task("./surely/not/here")


def test_error_file_instead_of_folder(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", _records(5))
    with pytest.raises(AuxoptError, match="is a file"):
        load_task(tmp_path / "train.jsonl")


def test_error_empty_split(tmp_path):
    _write_jsonl(tmp_path / "t" / "train.jsonl", _records(20))
    (tmp_path / "t" / "dev.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(AuxoptError, match="'t': the dev split is empty"):
        load_task(tmp_path / "t")
    with pytest.raises(AuxoptError, match="train split is missing or empty"):
        load_task({"train": [], "dev": _records(3)}, name="e")
    with pytest.raises(AuxoptError, match="test split is empty"):
        load_task({"train": _records(10), "test": []}, name="e")


def test_error_label_not_in_train():
    dev = _records(4) + [{"text": "odd one", "label": "maybe"}]
    with pytest.raises(AuxoptError, match=r"dev split has label\(s\) \['maybe'\] that train never has"):
        load_task({"train": _records(20), "dev": dev}, name="u")
    test = _records(4) + [{"text": "odd one", "label": "perhaps"}]
    with pytest.raises(AuxoptError, match=r"test split has label\(s\) \['perhaps'\]"):
        load_task({"train": _records(20), "dev": _records(4), "test": test}, name="u")
    # with an explicit label set the stray example is dropped and counted instead
    task = load_task({"train": _records(20), "dev": dev}, name="u", labels=["neg", "pos"])
    assert len(task.dev) == 4
    assert task.carved["dropped_dev"].startswith("1 examples")


def test_error_labels_that_match_nothing():
    with pytest.raises(AuxoptError, match="no train example has one of the labels"):
        load_task({"train": _records(20)}, name="x", labels=["a", "b"])


def test_error_pair_task_given_single_texts(tmp_path):
    with pytest.raises(AuxoptError, match="'single' is a text-pair task but its examples have single texts"):
        load_task({"train": _records(20), "dev": _records(4)}, name="single", pair=True)
    # and a pair task whose dev misses the second text
    with pytest.raises(AuxoptError, match="dev example 0 has no 'text_pair' field"):
        load_task({"train": _records(20, pair=True), "dev": _records(4)}, name="p")
    # pair=False drops the second text
    task = load_task({"train": _records(20, pair=True), "dev": _records(4, pair=True)}, name="p", pair=False)
    assert not task.is_pair


def test_error_missing_train_file(tmp_path):
    _write_jsonl(tmp_path / "only_dev" / "dev.jsonl", _records(5))
    with pytest.raises(AuxoptError, match="has no train file"):
        load_task(tmp_path / "only_dev")


def test_error_regression_with_non_numeric_labels():
    with pytest.raises(AuxoptError, match="regression task needs numeric labels; train has non-numbers"):
        load_task({"train": _records(20), "dev": _records(4)}, name="r", kind="regression")
    recs = [{"text": "a", "label": "1.5"}, {"text": "b", "label": "nan"}]
    with pytest.raises(AuxoptError, match=r"empty or NaN label at example\(s\) 1, 3, 5, 7, 9 "):
        load_task({"train": recs * 5, "dev": recs[:1]}, name="r", kind="regression")
    recs = [{"text": "a", "label": "1.5"}, {"text": "b", "label": "inf"}]
    with pytest.raises(AuxoptError, match="NaN or infinite"):
        load_task({"train": recs * 5, "dev": recs[:1]}, name="r", kind="regression")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_error_empty_or_nan_labels_name_the_file_lines_and_column(tmp_path, suffix):
    sep = "," if suffix == ".csv" else "\t"
    folder = tmp_path / "holes"
    folder.mkdir()
    rows = [f"text number {i}{sep}{('pos', 'neg')[i % 2]}" for i in range(30)]
    rows[3] = f"text number 3{sep}"  # an empty label
    rows[10] = f"text number 10{sep}NaN"  # what pandas writes for a missing value
    (folder / f"train{suffix}").write_text("\n".join([f"text{sep}label", *rows]) + "\n", encoding="utf-8")
    with pytest.raises(AuxoptError) as info:
        load_task(folder)
    message = str(info.value)
    assert str(folder / f"train{suffix}") in message and "column 'label'" in message
    assert "line(s) 5, 12 (2 of 30)" in message  # line 1 is the header
    # the same rows in a JSONL file (null, blank) are named by record; in memory by example index
    records = [{"text": f"t{i}", "label": ("pos", "neg")[i % 2]} for i in range(30)]
    records[3]["label"], records[10]["label"] = None, " "
    _write_jsonl(tmp_path / "j" / "train.jsonl", records)
    with pytest.raises(
        AuxoptError, match=r"train.jsonl', field 'label' has an empty or NaN label at record\(s\) 4, 11"
    ):
        load_task(tmp_path / "j")
    with pytest.raises(
        AuxoptError, match=r"the train split, field 'label' has an empty or NaN label at example\(s\) 3, 10"
    ):
        load_task({"train": records}, name="mem")
    # with an explicit label set they are dropped and counted, as any other stray label
    task = load_task(folder, labels=["neg", "pos"])
    assert "dropped_train" in task.carved


def test_error_in_memory_task_without_name():
    with pytest.raises(AuxoptError, match="in-memory task needs a name"):
        load_task({"train": _records(20), "dev": _records(4)})
    with pytest.raises(AuxoptError, match="needs a name"):
        load_task({"train": _records(20), "dev": _records(4)}, name="")


def test_error_unknown_split_and_bad_files(tmp_path):
    with pytest.raises(AuxoptError, match="unknown split 'holdout'"):
        load_task({"train": _records(20), "holdout": _records(4)}, name="s")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{not json\n', encoding="utf-8")
    with pytest.raises(AuxoptError, match="cannot read"):
        load_task(tmp_path / "bad")
    with pytest.raises(AuxoptError, match="no text field"):
        load_task({"train": [{"body": "a", "label": "x"}] * 10}, name="f")


def test_error_carving_impossible():
    with pytest.raises(AuxoptError, match="has no dev split"):
        load_task({"train": _records(3)}, name="tiny")
    # fractions of the original train that leave nothing to train on
    with pytest.raises(AuxoptError, match="has no test split and 50% of its 100 train examples"):
        load_task({"train": _records(100)}, name="half", dev_fraction=0.5, test_fraction=0.5)


def test_task_validation():
    split = Split(("a", "b"), np.array([0, 1]))
    with pytest.raises(AuxoptError, match="outside 0..1"):
        Task("t", Split(("a", "b"), np.array([0, 2])), split, labels=("x", "y"))
    with pytest.raises(AuxoptError, match="scored with 'pearson'"):
        Task("t", split, split, kind="regression", metric="accuracy")
    with pytest.raises(AuxoptError, match="'pearson' is for regression"):
        Task("t", split, split, labels=("x", "y"), metric="pearson")
    with pytest.raises(AuxoptError, match="2 texts but 3 labels"):
        Task("t", Split(("a", "b"), np.array([0, 1, 1])), split, labels=("x", "y"))
    with pytest.raises(AuxoptError, match="has no test split"):
        Task("t", split, split, labels=("x", "y")).split("test")
    with pytest.raises(AuxoptError, match="unknown metric 'auc'"):
        get_metric("auc")


def test_fingerprint_tracks_content():
    base = {"train": _records(20), "dev": _records(4), "test": _records(4)}
    a = build_task("f", base)
    assert a.fingerprint == build_task("f", base).fingerprint
    changed = {**base, "dev": _records(3) + [{"text": "example number 3", "label": "neg"}]}
    assert build_task("f", changed).fingerprint != a.fingerprint
    assert build_task("g", base).fingerprint != a.fingerprint


# ---------------------------------------------------------------------------- the hub code path


def _glue_like_repo(folder: Path, train, validation, test, *, regression: bool = False) -> None:
    """A local dataset repository that ``datasets.load_dataset(folder)`` reads: parquet files named by
    split, with GLUE's columns; the test split unlabelled (-1) as in GLUE."""
    import datasets

    label = datasets.Value("float32") if regression else datasets.ClassLabel(names=["entailment", "not_entailment"])
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": label,
            "idx": datasets.Value("int32"),
        }
    )

    def to_id(value):
        return float(value) if regression else ["entailment", "not_entailment"].index(value)

    folder.mkdir(parents=True)
    for split, recs, labelled in (("train", train, True), ("validation", validation, True), ("test", test, False)):
        dataset = datasets.Dataset.from_dict(
            {
                "sentence1": [r["text"] for r in recs],
                "sentence2": [r["text_pair"] for r in recs],
                "label": [to_id(r["label"]) if labelled else -1 for r in recs],
                "idx": list(range(len(recs))),
            },
            features=features,
        )
        dataset.to_parquet(str(folder / f"{split}.parquet"))


@pytest.mark.data
def test_hub_code_path_with_local_dataset_repository(data_dir, tmp_path, offline_hub):
    raw = _read_jsonl(data_dir / "rte" / "train.jsonl")
    train, validation, test = raw[:120], raw[120:160], raw[160:190]
    repo = tmp_path / "glue_rte"
    _glue_like_repo(repo, train, validation, test)

    task = load_task("hf:" + str(repo))
    assert task.name == "glue_rte"
    assert task.source == "hf:" + str(repo)
    assert task.is_pair and task.kind == "classification"
    assert task.labels == ("entailment", "not_entailment")
    # validation -> dev, with class ids mapped through the ClassLabel names
    assert task.dev.texts == tuple(r["text"] for r in validation)
    assert task.dev.pairs == tuple(r["text_pair"] for r in validation)
    assert [task.labels[i] for i in task.dev.labels] == [r["label"] for r in validation]
    # the unlabelled test split is dropped and a test split carved from train instead
    assert task.carved == {"test": "12 examples (10%) carved from train with seed 0"}
    assert len(task.train) + len(task.test) == len(train)
    assert set(task.test.texts) <= {r["text"] for r in train}
    unlabelled = {r["text"] for r in test} - {r["text"] for r in train + validation}
    assert unlabelled and not unlabelled & set(task.train.texts + task.dev.texts + task.test.texts)

    named = load_task("hf:" + str(repo), name="rte_hub", seed=1)
    assert named.name == "rte_hub" and named.test.texts != task.test.texts


@pytest.mark.data
def test_hub_code_path_drops_unlabelled_regression_test(data_dir, tmp_path, offline_hub):
    raw = _read_jsonl(data_dir / "stsb" / "train.jsonl")
    repo = tmp_path / "glue_stsb"
    _glue_like_repo(repo, raw[:100], raw[100:130], raw[130:150], regression=True)
    task = load_task("hf:" + str(repo))
    assert task.kind == "regression" and task.metric == "pearson"
    np.testing.assert_allclose(task.dev.labels, [float(r["label"]) for r in raw[100:130]], rtol=1e-6)
    assert "test" in task.carved  # GLUE's -1.0 test labels are not kept as real labels
    assert len(task.train) + len(task.test) == 100
    assert task.test.labels.min() >= 0


def test_unknown_hub_name_offline_is_an_auxopt_error(tmp_path, monkeypatch, offline_hub):
    monkeypatch.setenv("AUXOPT_DATA", str(tmp_path))
    with pytest.raises(AuxoptError, match=r"unknown task 'hf:auxopt-no-such-org/no-such-dataset'") as info:
        load_task("hf:auxopt-no-such-org/no-such-dataset", config="rte")
    assert type(info.value) is AuxoptError
    assert str(tmp_path) in str(info.value)  # names the data folders it searched
    with pytest.raises(AuxoptError, match="unknown task 'auxopt-no-such-org/x'"):
        load_task("auxopt-no-such-org/x")


# ---------------------------------------------------------------------------- metrics


def test_accuracy_by_hand():
    acc = get_metric("accuracy")
    assert acc(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])) == pytest.approx(3 / 4)
    assert acc(np.array([1, 1, 1]), np.array([0, 0, 0])) == 0.0


def test_macro_f1_by_hand():
    f1 = get_metric("macro_f1")
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 1, fp 0, fn 1 -> 2/3
    assert f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class predicted but never true counts (F1 0): class 0 -> 2/3, class 1 -> 0
    assert f1(np.array([0, 0]), np.array([0, 1])) == pytest.approx(1 / 3)
    assert f1(y_true, y_true) == 1.0


def test_mcc_by_hand():
    mcc = get_metric("mcc")
    y_true = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    tp, tn, fp, fn = 3, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc(y_true, y_pred) == pytest.approx(expected)  # 4 / sqrt(240)
    assert mcc(y_true, y_true) == pytest.approx(1.0)
    assert mcc(y_true, 1 - y_true) == pytest.approx(-1.0)
    assert mcc(y_true, np.ones_like(y_true)) == 0.0  # undefined: constant prediction
    # three classes: confusion [[2,0,0],[1,0,1],[0,1,1]]; Gorodkin's R_K = (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t))
    # c = 3, s = 6, t = (2,2,2), p = (3,1,2): (18 - 12) / sqrt((36 - 14) * (36 - 12))
    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([0, 2, 1, 0, 0, 2])
    assert mcc(y_true, y_pred) == pytest.approx(6 / math.sqrt(22 * 24))


def test_pearson_by_hand():
    r = get_metric("pearson")
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 4.0, 5.0, 9.0])
    # deviations (-1.5, -.5, .5, 1.5) and (-3, -1, 0, 4): 11 / sqrt(5 * 26)
    assert r(x, y) == pytest.approx(11 / math.sqrt(130))
    assert r(x, -2 * x + 1) == pytest.approx(-1.0)
    assert r(x, np.full(4, 3.0)) == 0.0


def test_task_score_and_majority_baseline():
    task = load_task(
        {
            "train": _records(9, labels=("a", "a", "b")),
            "dev": _records(4, labels=("a", "b")),
            "test": _records(5, labels=("b", "b", "b", "b", "a")),
        },
        name="cola",  # a known name picks the literature's metric
    )
    assert task.metric == "mcc"
    assert task.majority_baseline("test") == 0.0  # constant prediction: MCC undefined -> 0
    task = load_task(
        {
            "train": _records(9, labels=("a", "a", "b")),
            "dev": _records(4, labels=("a", "b")),
            "test": _records(5, labels=("b", "b", "b", "b", "a")),
        },
        name="other",
    )
    assert task.metric == "accuracy"
    assert task.majority_baseline("test") == pytest.approx(1 / 5)
    assert task.score(np.array([0, 1]), np.array([0, 0])) == 0.5
    assert load_task({"train": _records(20)}, name="citation_intent").metric == "macro_f1"


# ---------------------------------------------------------------------------- synthetic suite


def test_synthetic_suite_is_deterministic():
    a = make_synthetic_suite(seed=5)
    b = make_synthetic_suite(seed=5)
    c = make_synthetic_suite(seed=6)
    for x, y in zip(a.tasks, b.tasks, strict=True):
        assert x.fingerprint == y.fingerprint
        assert x.train.texts == y.train.texts
        np.testing.assert_array_equal(x.test.labels, y.test.labels)
    assert a.primary.fingerprint != c.primary.fingerprint
    assert a.primary.train.texts != c.primary.train.texts


def test_synthetic_suite_names_roles_and_heads():
    suite = make_synthetic_suite(n_helpful=3, n_neutral=1, n_harmful=2, n_aux_train=200, n_dev=50, n_test=60)
    assert suite.primary.name == "primary"
    assert [t.name for t in suite.auxiliaries] == [
        "helpful_0",
        "helpful_1",
        "helpful_2",
        "neutral_0",
        "harmful_0",
        "harmful_1",
    ]
    assert suite.ground_truth == {
        "helpful_0": "helpful",
        "helpful_1": "helpful",
        "helpful_2": "helpful",
        "neutral_0": "neutral",
        "harmful_0": "harmful",
        "harmful_1": "harmful",
    }
    assert suite.names("harmful") == ["harmful_0", "harmful_1"]
    assert suite.names("helpful") == ["helpful_0", "helpful_1", "helpful_2"]
    for task in suite.auxiliaries:
        if suite.ground_truth[task.name] == "harmful":
            assert task.head == "primary" and task.head_name == "primary"
            assert task.num_labels == suite.primary.num_labels
        else:
            assert task.head is None and task.head_name == task.name
    assert suite.primary.head is None
    assert [t.num_labels for t in suite.auxiliaries[:3]] == [3, 2, 3]  # helpful: 3-way and binary
    assert (len(suite.primary.train), len(suite.primary.dev), len(suite.primary.test)) == (500, 50, 60)
    assert all((len(t.train), len(t.dev), len(t.test)) == (200, 50, 50) for t in suite.auxiliaries)
    assert len({t.fingerprint for t in suite.tasks}) == len(suite.tasks)


def test_synthetic_labels_are_balanced_and_roles_are_real():
    suite = make_synthetic_suite(seed=0)
    for task in suite.tasks:
        for split in (task.train, task.test):
            share = np.bincount(split.labels, minlength=task.num_labels) / len(split)
            assert share.min() > 0.1, (task.name, share)
            assert share.max() < 0.8, (task.name, share)

    # The roles mean something: a bag-of-words linear model fitted on a binary auxiliary's train split
    # predicts the primary's test labels well for a helpful task and at chance for the others.
    vocab = {w: i for i, w in enumerate(sorted({w for t in suite.tasks for s in t.train.texts for w in s.split()}))}

    def features(texts):
        m = np.zeros((len(texts), len(vocab)))
        for i, text in enumerate(texts):
            for w in text.split():
                m[i, vocab[w]] += 1
        return m

    x_primary, y_primary = features(suite.primary.test.texts), suite.primary.test.labels
    transfer = {}
    for task in suite.auxiliaries:
        if task.num_labels != 2:
            continue
        x = features(task.train.texts)
        w = np.linalg.solve(x.T @ x + np.eye(len(vocab)), x.T @ (2.0 * task.train.labels - 1))
        transfer[task.name] = float(np.mean((x_primary @ w > 0) == y_primary))
    assert transfer["helpful_1"] > 0.68
    for name in ("neutral_0", "neutral_1", "harmful_0", "harmful_1"):
        assert 0.35 < transfer[name] < 0.62, transfer
        assert transfer[name] < transfer["helpful_1"] - 0.12
    # the texts really are made of the hidden language's words, 10 to 20 a sentence
    lengths = [len(t.split()) for t in suite.primary.train.texts]
    assert min(lengths) >= 10 and max(lengths) <= 20
    assert re.fullmatch(r"[a-z ]+", suite.primary.train.texts[0])
