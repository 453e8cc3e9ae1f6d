"""Which tokenizer encodes a run's text data: never the candidate's alone (gate.runner.refuse_candidate_tokenizer)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from gate.config import build_config
from gate.errors import ConfigError
from gate.runner import refuse_candidate_tokenizer, run_tokenizer, tokenizer_fingerprint
from tests.unit.model_fixtures import build_hf_dir


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    import transformers

    root = tmp_path_factory.mktemp("tok")
    build_hf_dir(root / "a", id2label={0: "negative", 1: "positive"})
    shutil.copytree(root / "a", root / "b")
    settings = json.loads((root / "b" / "tokenizer_config.json").read_text())
    settings["model_max_length"] = 4
    (root / "b" / "tokenizer_config.json").write_text(json.dumps(settings))
    load = transformers.AutoTokenizer.from_pretrained
    return {"a": load(str(root / "a")), "a2": load(str(root / "a")), "b": load(str(root / "b"))}


def _models(base, cand):
    return {"baseline": SimpleNamespace(tokenizer=base, path="base/"),
            "candidate": SimpleNamespace(tokenizer=cand, path="cand/")}


def test_the_same_tokenizer_loaded_twice_has_one_fingerprint_and_a_changed_one_another(tokenizers):
    assert tokenizer_fingerprint(tokenizers["a"]) == tokenizer_fingerprint(tokenizers["a2"])
    assert tokenizer_fingerprint(tokenizers["a"]) != tokenizer_fingerprint(tokenizers["b"])
    assert tokenizers["a"]("one two three four five six")["input_ids"] != \
        tokenizers["b"]("one two three four five six", truncation=True)["input_ids"]     # it does encode otherwise


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
