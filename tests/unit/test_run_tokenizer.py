"""Which tokenizer encodes a run's text data: never the candidate's alone (gate.runner.refuse_candidate_tokenizer)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from gate.config import build_config
from gate.errors import ConfigError
from gate.data.tokenize import tokenizer_fingerprint
from gate.runner import refuse_candidate_tokenizer, run_tokenizer
from tests.unit.model_fixtures import VOCAB, build_hf_dir


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    import transformers

    root = tmp_path_factory.mktemp("tok")
    build_hf_dir(root / "a", id2label={0: "negative", 1: "positive"})
    load = transformers.AutoTokenizer.from_pretrained
    other = load(str(root / "a"))
    other.add_tokens(["zzzword"])                   # one more word in the vocabulary: another encoding
    other.save_pretrained(str(root / "b"))
    used = load(str(root / "a"))                    # saved after a call with truncation and padding (usual after training)
    used(["one two three", "one"], padding=True, truncation=True, max_length=2)
    used.save_pretrained(str(root / "used"))
    shutil.copytree(root / "a", root / "short")
    settings = json.loads((root / "short" / "tokenizer_config.json").read_text())
    settings["model_max_length"] = 4                # overridden by the explicit max_length gate passes
    (root / "short" / "tokenizer_config.json").write_text(json.dumps(settings))
    return {"a": load(str(root / "a")), "a2": load(str(root / "a")), "b": load(str(root / "b")),
            "used": load(str(root / "used")), "short": load(str(root / "short"))}


def _models(base, cand):
    return {"baseline": SimpleNamespace(tokenizer=base, path="base/"),
            "candidate": SimpleNamespace(tokenizer=cand, path="cand/")}


def _encoded(tokenizer, texts):
    """As gate encodes text (gate.data.tokenize.HFEncoder)."""
    return tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")["input_ids"].tolist()


def test_tokenizers_that_encode_alike_have_one_fingerprint_and_one_that_does_not_another(tokenizers):
    texts = ["one two three four five six zzzword", "one"]
    for same in ("a2", "used", "short"):            # loaded twice; saved after use; another model_max_length
        assert _encoded(tokenizers[same], texts) == _encoded(tokenizers["a"], texts), same
        assert tokenizer_fingerprint(tokenizers[same]) == tokenizer_fingerprint(tokenizers["a"]), same
    assert _encoded(tokenizers["b"], texts) != _encoded(tokenizers["a"], texts)      # it does encode otherwise
    assert tokenizer_fingerprint(tokenizers["b"]) != tokenizer_fingerprint(tokenizers["a"])


def test_text_data_is_encoded_by_the_baselines_tokenizer_or_the_policys(tokenizers):
    config = build_config({})
    same = _models(tokenizers["a"], tokenizers["a2"])
    assert run_tokenizer(same) is tokenizers["a"]
    refuse_candidate_tokenizer(config, same, "jsonl")                         # the same tokenizer: fine
    refuse_candidate_tokenizer(config, _models(tokenizers["a"], None), "csv")  # only the baseline's: fine
    with pytest.raises(ConfigError, match=r"data.tokenizer: the candidate's tokenizer \(cand/\) differs"):
        refuse_candidate_tokenizer(config, _models(tokenizers["a"], tokenizers["b"]), "jsonl")
    with pytest.raises(ConfigError, match=r"data.tokenizer: only the candidate \(cand/\) ships a tokenizer"):
        refuse_candidate_tokenizer(config, _models(None, tokenizers["a"]), "csv")
    refuse_candidate_tokenizer(config, _models(None, tokenizers["a"]), "npz")  # tensors: no text to encode
    named = build_config({"data": {"tokenizer": "some/dir"}})                  # the policy names the tokenizer
    refuse_candidate_tokenizer(named, _models(None, tokenizers["a"]), "jsonl")
    refuse_candidate_tokenizer(named, _models(tokenizers["a"], tokenizers["b"]), "jsonl")


def test_slow_tokenizers_that_lowercase_differently_have_two_fingerprints(tmp_path):
    import transformers

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    lower = transformers.BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=True)
    cased = transformers.BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=False)
    again = transformers.BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=True)
    text = " ".join(word.upper() for word in VOCAB[5:8])
    assert not hasattr(lower, "backend_tokenizer")                                  # a Python (slow) tokenizer
    assert lower(text)["input_ids"] != cased(text)["input_ids"]                     # they do encode otherwise
    assert tokenizer_fingerprint(lower) != tokenizer_fingerprint(cased)
    assert tokenizer_fingerprint(lower) == tokenizer_fingerprint(again)
