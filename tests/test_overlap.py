"""Contamination check: normalised exact matches between train splits and the primary's dev/test."""

from __future__ import annotations

import json
import unicodedata
import warnings

import optuna
import pytest

import auxopt
from auxopt import (
    AuxoptError,
    ContaminationWarning,
    StudySpec,
    TrainConfig,
    check_overlap,
    load_task,
)
from auxopt.cli import main
from auxopt.tasks.overlap import clear_overlap_cache, normalize_text, overlap_cache_info


def real(name: str):
    return load_task(name)


def task(name: str, train, dev, test=None, pair: bool = False):
    """An in-memory task; each text is a str (single) or a (text, text_pair) tuple (pair). Without
    ``test``, its test split is one example of its own ("<name> held out")."""

    def records(texts):
        out = []
        for i, t in enumerate(texts):
            rec = {"text": t[0], "text_pair": t[1]} if pair else {"text": t}
            out.append({**rec, "label": str(i % 2)})
        return out

    if test is None:
        test = [(f"{name} held", "out")] if pair else [f"{name} held out"]
    splits = {"train": records(train), "dev": records(dev), "test": records(test)}
    return load_task(splits, name=name, pair=pair or None, labels=["0", "1"])


def counts(report) -> dict[tuple[str, str], int]:
    """(source, primary split) -> number of primary examples found in the source's train split."""
    return {(p.source, p.split): p.count for p in report.pairs}


# ------------------------------------------------------------ an independent brute-force rule


def _brute_key(text: str) -> str:
    """The documented rule, written out again with sets of strings (no regex, no hashes)."""
    if not text.isascii():
        for codec in ("latin-1", "cp1252"):
            try:
                text = text.encode(codec).decode("utf-8")
                break
            except UnicodeError:
                pass
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


def _brute_count(primary, split: str, source) -> int:
    seen = {_brute_key(t) for t in source.train.texts} - {""}
    return sum(_brute_key(t) in seen for t in primary.split(split).texts)


# ------------------------------------------------------------ real data


@pytest.mark.data
def test_sst2_is_contaminated_by_mr_and_subj(data_dir):
    sst2, mr, subj = real("sst2"), real("mr"), real("subj")
    report = check_overlap(sst2, [mr, subj], on_overlap="ignore")
    found = counts(report)
    assert found[("mr", "dev")] == 541 and found[("mr", "test")] == 1127
    assert found[("subj", "dev")] == 208 and found[("subj", "test")] == 453
    for source in (mr, subj):
        for split in ("dev", "test"):
            assert found[(source.name, split)] == _brute_count(sst2, split, source)
    sizes = {p.split: p.size for p in report.pairs}
    assert sizes == {"dev": 872, "test": 1821}
    with pytest.warns(
        ContaminationWarning,
        match=r"sst2's test split: 1127 of 1821 examples \(61\.9%\) also appear in mr's train split",
    ):
        check_overlap(sst2, [mr])


@pytest.mark.data
def test_tokenisation_and_mojibake_are_what_the_strong_rule_catches(data_dir):
    """Many of sst2's test texts found in mr's train split differ from their mr twin in the raw text:
    SST re-tokenised "moore's" as "moore 's" (a rule that keeps word boundaries misses those) and
    some of its accents are mojibake."""
    import re

    sst2, mr = real("sst2"), real("mr")

    def weak(text: str) -> str:  # letters and digits, words kept apart
        return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())

    verbatim = len([t for t in sst2.test.texts if t in set(mr.train.texts)])
    words = {weak(t) for t in mr.train.texts}
    word_level = sum(weak(t) in words for t in sst2.test.texts)
    strong = counts(check_overlap(sst2, [mr], on_overlap="ignore"))[("mr", "test")]
    assert verbatim < word_level < strong == 1127
    assert verbatim < 0.6 * strong


@pytest.mark.data
@pytest.mark.parametrize(
    "primary, auxiliaries, own",
    [
        ("cr", ["trec", "mr", "sst2", "subj", "cola", "qnli"], {"dev": 1, "test": 3}),
        ("citation_intent", ["sst2", "trec", "chemprot", "hyperpartisan"], {"dev": 43, "test": 52}),
    ],
)
def test_clean_pairs_report_zero(data_dir, primary, auxiliaries, own):
    """No auxiliary here shares an example with the primary's dev or test split; the primaries'
    own train splits hold a few of their dev/test examples (citation_intent: over a third)."""
    p = real(primary)
    report = check_overlap(p, [real(a) for a in auxiliaries], on_overlap="ignore")
    found = counts(report)
    assert {k: v for k, v in found.items() if v} == {(primary, s): n for s, n in own.items()}
    for split, n in own.items():
        assert n == _brute_count(p, split, p)


# ------------------------------------------------------------ the normalisation rule


@pytest.mark.parametrize(
    "seen, probe",
    [
        ("The Film Works.", "the film works"),  # case and punctuation
        ("a   film\twith\nspaces", "afilmwithspaces"),  # whitespace, all of it
        ("it does n't work , moore 's film", "it doesn't work, moore's film"),  # tokenisation
        ("how do you spell cliché ?", "how do you spell clichÃ© ?"),  # UTF-8 read as Latin-1
        ("ｆｉｌｍ №１", "film no1"),  # NFKC: full-width letters, the numero sign
        ("STRASSE", "straße"),  # casefold, not lower
    ],
)
def test_normalisation_makes_these_equal(seen, probe):
    assert normalize_text(seen) == normalize_text(probe)
    report = check_overlap(task("p", ["x one"], [probe, "other text"]), [task("a", [seen], ["y"])], on_overlap="ignore")
    assert counts(report)[("a", "dev")] == 1


@pytest.mark.parametrize("a, b", [("good film", "good films"), ("café", "cafe"), ("ab c", "a bd")])
def test_normalisation_keeps_these_apart(a, b):
    assert normalize_text(a) != normalize_text(b)


def test_texts_without_letters_or_digits_never_count():
    primary = task("p", ["some text"], ["...", "!!!", "real words"])
    report = check_overlap(primary, [task("a", ["?!", "...", "more"], ["y"])], on_overlap="ignore")
    assert counts(report)[("a", "dev")] == 0


def test_duplicates_in_the_primary_split_each_count():
    primary = task("p", ["x"], ["same text", "Same text!", "new"])
    assert counts(check_overlap(primary, [task("a", ["same text"], ["y"])], on_overlap="ignore"))[("a", "dev")] == 2


# ------------------------------------------------------------ pairs, own train, splits


def test_pair_examples_are_compared_whole():
    primary = task(
        "p", [("q0", "s0")], [("Is it?", "It is."), ("is it", "something else"), ("It is.", "Is it?")], pair=True
    )
    aux = task("a", [("is it", "it is"), ("x", "y")], [("z", "w")], pair=True)
    found = counts(check_overlap(primary, [aux], on_overlap="ignore"))
    assert found[("a", "dev")] == 1  # only both texts equal, in order


def test_pair_never_matches_single_text():
    single = task("s", ["is it"], ["is it", "is it it is", "isitisit"])
    pair = task("pair", [("is it", ""), ("is it", "it is"), ("isit", "isit")], [("a", "b")], pair=True)
    assert counts(check_overlap(single, [pair], on_overlap="ignore"))[("pair", "dev")] == 0
    pair_primary = task("pp", [("q", "s")], [("is it", "it is")], pair=True)
    assert counts(check_overlap(pair_primary, [single], on_overlap="ignore"))[("s", "dev")] == 0


def test_primary_own_train_against_dev_and_test():
    primary = task("p", ["alpha", "beta", "gamma"], ["Alpha!", "delta"], ["BETA", "gamma", "eps"])
    report = check_overlap(primary, on_overlap="ignore")
    assert counts(report) == {("p", "dev"): 1, ("p", "test"): 2}
    assert all(p.own for p in report.pairs)
    with pytest.raises(AuxoptError, match="remove the duplicates from p's train split"):
        check_overlap(primary, on_overlap="error")


def test_primary_without_test_split_checks_dev_only():
    import dataclasses

    primary = dataclasses.replace(task("p", ["a1", "b2"], ["c3"]), test=None)
    report = check_overlap(primary, [task("a", ["c3"], ["x"])], on_overlap="ignore")
    assert counts(report) == {("p", "dev"): 0, ("a", "dev"): 1}


# ------------------------------------------------------------ warn, error, ignore; the report


@pytest.fixture
def leaky():
    primary = task("p", ["own one", "own two", "own three"], ["seen before", "fresh one"], ["seen again", "fresh two"])
    aux = task("aux", ["Seen before.", "seen again", "unrelated"], ["z"])
    clean = task("clean", ["nothing shared"], ["z"])
    return primary, aux, clean


def test_warn_names_tasks_counts_and_fraction(leaky):
    primary, aux, clean = leaky
    with pytest.warns(ContaminationWarning) as record:
        report = check_overlap(primary, [aux, clean])
    assert len(record) == 1 and record[0].filename == __file__
    message = str(record[0].message)
    assert "p's dev split: 1 of 2 examples (50.0%) also appear in aux's train split" in message
    assert "p's test split: 1 of 2 examples (50.0%) also appear in aux's train split" in message
    assert "clean" not in message
    assert "drop aux from the auxiliaries" in message and "on_overlap='ignore'" in message
    assert report.contaminated and [(o.source, o.split) for o in report.overlaps] == [("aux", "dev"), ("aux", "test")]


def test_error_has_the_same_message_and_the_fix(leaky):
    primary, aux, clean = leaky
    with pytest.raises(AuxoptError) as info:
        check_overlap(primary, [aux, clean], on_overlap="error")
    text = str(info.value)
    assert "p's dev split: 1 of 2 examples (50.0%) also appear in aux's train split" in text
    assert "drop aux" in text and "on_overlap='ignore'" in text


def test_ignore_and_clean_are_silent(leaky):
    primary, aux, clean = leaky
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_overlap(primary, [aux], on_overlap="ignore").contaminated
        report = check_overlap(primary, [clean], on_overlap="error")
    assert not report.contaminated and report.message() == ""


def test_bad_on_overlap_value(leaky):
    primary, aux, _ = leaky
    with pytest.raises(AuxoptError, match="on_overlap must be 'warn', 'error' or 'ignore', not 'raise'"):
        check_overlap(primary, [aux], on_overlap="raise")
    with pytest.raises(AuxoptError, match="on_overlap must be"):
        TrainConfig(primary, [aux], on_overlap="loud")
    with pytest.raises(AuxoptError, match="study 's': on_overlap must be"):
        StudySpec(name="s", primary=primary, auxiliaries=[aux], on_overlap=True)


def test_report_is_json_friendly_and_one_line_per_pair(leaky):
    primary, aux, clean = leaky
    report = check_overlap(primary, [aux, clean], on_overlap="ignore")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["primary"] == "p" and data["contaminated"] is True and "NFKC" in data["normalization"]
    assert {"split": "dev", "source": "aux", "source_split": "train", "count": 1, "size": 2, "fraction": 0.5} in data[
        "pairs"
    ]
    lines = str(report).splitlines()
    assert len(lines) == len(report.pairs) == 6  # (p own, aux, clean) x (dev, test)
    assert "p dev ← aux train: 1 of 2 (50.0%)" in lines


def test_exported_names():
    assert auxopt.check_overlap is check_overlap
    assert issubclass(auxopt.ContaminationWarning, UserWarning)
    assert auxopt.OverlapReport is type(check_overlap(task("p", ["a"], ["b"]), on_overlap="ignore"))


# ------------------------------------------------------------ the cache


def test_hashes_are_cached_per_task_and_split(leaky):
    primary, aux, clean = leaky
    clear_overlap_cache()
    check_overlap(primary, [aux, clean], on_overlap="ignore")
    first = overlap_cache_info()
    assert first.misses == 5  # p dev, p test, p train, aux train, clean train
    check_overlap(primary, [aux, clean], on_overlap="ignore")
    again = overlap_cache_info()
    assert again.misses == 5 and again.hits == first.hits + 5
    rebuilt = task("aux", ["Seen before.", "seen again", "unrelated"], ["z"])  # same content: same fingerprint
    check_overlap(primary, [rebuilt], on_overlap="ignore")
    assert overlap_cache_info().misses == 5
    changed = task("aux", ["Seen before.", "another text"], ["z"])
    check_overlap(primary, [changed], on_overlap="ignore")
    assert overlap_cache_info().misses == 6


# ------------------------------------------------------------ studies and training


def spec_for(primary, auxiliaries, tmp_path, **kwargs):
    return StudySpec(
        name="leaky_study",
        primary=primary,
        auxiliaries=auxiliaries,
        base={"max_steps": 2, "eval_every": 1, "max_length": 16, "batch_size": 2, "model": "tiny"},
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=f"sqlite:///{tmp_path / 'leaky.db'}",
        n_trials=1,
        **kwargs,
    )


def test_study_error_writes_nothing(leaky, tmp_path):
    primary, aux, _ = leaky
    spec = spec_for(primary, [aux], tmp_path, on_overlap="error")
    with pytest.raises(AuxoptError, match="aux's train split"):
        spec.optimize()
    with pytest.raises(AuxoptError, match="aux's train split"):
        spec.load_study()  # the other way in, too
    assert not (tmp_path / "leaky.db").exists()


def test_cli_error_writes_nothing(leaky, tmp_path, capsys):
    path = tmp_path / "study.py"
    path.write_text(
        "from auxopt import StudySpec, load_task\n"
        "def t(name, train, dev, test):\n"
        "    rec = lambda texts: [{'text': x, 'label': str(i % 2)} for i, x in enumerate(texts)]\n"
        "    return load_task({'train': rec(train), 'dev': rec(dev), 'test': rec(test)}, name=name)\n"
        "study = StudySpec(name='leaky', primary=t('p', ['a b', 'c d'], ['seen before', 'e f'], ['m n', 'o p']),\n"
        "                  auxiliaries=[t('aux', ['Seen, before!', 'g h'], ['i j', 'k l'], ['q r', 's t'])],\n"
        "                  on_overlap='error')\n"
    )
    assert main(["run", str(path), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "p's dev split: 1 of" in err and "aux's train split" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.db"))


def test_study_records_the_report(leaky, tmp_path):
    primary, aux, clean = leaky
    spec = spec_for(primary, [aux, clean], tmp_path)
    with pytest.warns(ContaminationWarning, match="aux's train split"):
        spec.preflight()
    study = spec.load_study()
    stored = study.user_attrs["contamination"]
    assert stored == json.loads(json.dumps(check_overlap(primary, [aux, clean], on_overlap="ignore").to_dict()))
    assert {(p["source"], p["split"]): p["count"] for p in stored["pairs"]}[("aux", "test")] == 1
    assert spec.config_for({}).on_overlap == "ignore"  # the study checked; its trials do not warn again


def test_study_on_overlap_is_not_a_base_setting(leaky):
    primary, aux, _ = leaky
    with pytest.raises(AuxoptError, match=r"StudySpec\(\.\.\., on_overlap='error'\)"):
        StudySpec(name="s", primary=primary, auxiliaries=[aux], base={"on_overlap": "error"})


def test_autosem_passes_on_overlap(leaky):
    from auxopt.pipelines import AutoSeM

    primary, aux, _ = leaky
    pipeline = AutoSeM(name="a", primary=primary, auxiliaries=[aux], on_overlap="error")
    assert pipeline._stage1_spec().on_overlap == "error"


def test_train_checks_records_and_fails_before_training(leaky):
    from auxopt.train import train

    primary, aux, clean = leaky
    small = {"model": "tiny", "max_steps": 2, "eval_every": 1, "max_length": 16, "batch_size": 2}
    with pytest.raises(AuxoptError, match="aux's train split"):
        train(TrainConfig(primary, [aux], on_overlap="error", **small))
    with pytest.warns(ContaminationWarning, match="aux's train split"):
        result = train(TrainConfig(primary, [aux, clean], **small))
    stored = result.extra["contamination"]
    assert {(p["source"], p["split"]): p["count"] for p in stored["pairs"]}[("aux", "dev")] == 1
    # a task with ratio 0 is not trained on, so it is not checked; a clean run records nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContaminationWarning)
        result = train(TrainConfig(primary, [aux, clean], ratios={"p": 1, "clean": 1}, **small))
    assert "contamination" not in result.extra
