"""gate.data: every format, labels as ints and class names, batching, limit, order, tokenizers, factories, bad input."""
from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gate.data import EvalData, open_data, sniff_data_format
from gate.errors import ConfigError, DataError

CLASSES = ("neg", "neu", "pos")
WORDS = ["good", "bad", "movie", "plot", "great", "awful", "fine", "long", "short", "acting"]
VOCAB = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}


# ---------------------------------------------------------------------------------------------- fixtures


def make_samples(count: int = 23, seed: int = 0) -> list[tuple[str, int]]:
    """Texts of 1..6 known words with labels 0..2, from a fixed seed."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        words = rng.choice(WORDS, size=int(rng.integers(1, 7)))
        samples.append((" ".join(words), int(rng.integers(0, 3))))
    return samples


SAMPLES = make_samples()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Hugging Face tokenizer directory: WordLevel model, whitespace pre-tokenizer, [PAD] padding."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory = tmp_path_factory.mktemp("tokenizer")
    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "unk_token": "[UNK]",
              "model_max_length": 512}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)


def oracle_ids(text: str, max_length: int | None = None) -> list[int]:
    """Token ids straight from the vocabulary (whitespace split), independent of gate and transformers."""
    ids = [VOCAB.get(word, VOCAB["[UNK]"]) for word in text.split()]
    return ids[:max_length] if max_length else ids


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_all(data: EvalData) -> tuple[list[Any], torch.Tensor]:
    inputs, labels = [], []
    for batch_inputs, batch_labels in data.batches():
        assert batch_labels.dtype == torch.int64 and batch_labels.ndim == 1
        inputs.append(batch_inputs)
        labels.append(batch_labels)
    return inputs, torch.cat(labels)


def unpadded_ids(batches: list[dict[str, torch.Tensor]]) -> list[list[int]]:
    """Per-sample token ids with padding removed via the attention mask, so batches of any size compare."""
    rows = []
    for batch in batches:
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            rows.append(ids[mask.bool()].tolist())
    return rows


def opts(**overrides: Any) -> dict[str, Any]:
    return {"format": "auto", "batch_size": 64, "text_column": "text", "label_column": "label",
            "labels": "labels", "max_length": 256, **overrides}


_module_counter = itertools.count()


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module into a fresh current directory (not on sys.path: gate must add it) and return its name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])

    def write(source: str) -> str:
        name = f"gate_test_userdata_{next(_module_counter)}"
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    yield write


# ---------------------------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.csv", "csv"), ("a.tsv", "csv"), ("a.pt", "pt"),
     ("a.pth", "pt"), ("a.safetensors", "safetensors"), ("a.npz", "npz")],
)
def test_sniff_by_extension(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    assert sniff_data_format(str(tmp_path / name)) == expected


def test_sniff_by_content_without_extension(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    x, y = torch.zeros(3, 2), torch.tensor([0, 1, 0])
    torch.save({"x": x, "labels": y}, tmp_path / "pt_file")
    save_file({"x": x, "labels": y}, str(tmp_path / "st_file"))
    with open(tmp_path / "npz_file", "wb") as fh:
        np.savez(fh, x=x.numpy(), labels=y.numpy())
    write_jsonl(tmp_path / "jsonl_file", [{"text": "good", "label": 1}])
    write_csv(tmp_path / "csv_file", ["text", "label"], [["good", 1]])
    found = {name: sniff_data_format(str(tmp_path / name))
             for name in ("pt_file", "st_file", "npz_file", "jsonl_file", "csv_file")}
    assert found == {"pt_file": "pt", "st_file": "safetensors", "npz_file": "npz", "jsonl_file": "jsonl",
                     "csv_file": "csv"}


def test_sniff_factory_spec_and_unknown_content(tmp_path: Path) -> None:
    assert sniff_data_format("my_pkg.data:make_eval") == "factory"
    (tmp_path / "blob").write_bytes(b"\x00\x01binary junk")
    with pytest.raises(DataError, match=r"blob: cannot tell the data format.*data\.format"):
        sniff_data_format(str(tmp_path / "blob"))


# ---------------------------------------------------------------------------------------------- text data


def test_jsonl_int_labels_match_vocabulary_oracle(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y, "id": i} for i, (t, y) in enumerate(SAMPLES)])
    data = open_data(str(path), options=opts(batch_size=5), class_names=None, tokenizer=hf_tokenizer)
    assert (data.format, data.num_samples, data.class_names) == ("jsonl", None, None)
    batches, labels = read_all(data)
    assert [len(b["input_ids"]) for b in batches] == [5, 5, 5, 5, 3]
    assert unpadded_ids(batches) == [oracle_ids(t) for t, _ in SAMPLES]
    assert labels.tolist() == [y for _, y in SAMPLES]
    assert data.num_samples == len(SAMPLES)
    import hashlib
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_jsonl_class_name_labels_map_with_class_names(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [{"review": t, "sentiment": CLASSES[y]} for t, y in SAMPLES])
    data = open_data(str(path), options=opts(text_column="review", label_column="sentiment"),
                     class_names=CLASSES, tokenizer=hf_tokenizer)
    _, labels = read_all(data)
    assert labels.tolist() == [y for _, y in SAMPLES]
    assert data.class_names == CLASSES


def test_csv_string_integer_labels_without_class_names(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_csv(tmp_path / "eval.csv", ["label", "text", "extra"], [[y, t, "x,y"] for t, y in SAMPLES])
    data = open_data(str(path), options=opts(batch_size=4), class_names=None, tokenizer=hf_tokenizer)
    batches, labels = read_all(data)
    assert data.format == "csv"
    assert labels.tolist() == [y for _, y in SAMPLES]
    assert unpadded_ids(batches) == [oracle_ids(t) for t, _ in SAMPLES]


def test_tsv_with_class_names_and_quoted_multiline_text(tmp_path: Path, hf_tokenizer: Any) -> None:
    rows = [["good\nmovie", "pos"], ["bad plot", "neg"], ["fine", "1"]]
    path = write_csv(tmp_path / "eval.tsv", ["text", "label"], rows, delimiter="\t")
    data = open_data(str(path), options=opts(), class_names=CLASSES, tokenizer=hf_tokenizer)
    batches, labels = read_all(data)
    assert labels.tolist() == [2, 0, 1]  # "1" is not a class name, so it is read as the index 1
    assert unpadded_ids(batches) == [oracle_ids("good movie"), oracle_ids("bad plot"), oracle_ids("fine")]


def test_csv_with_byte_order_mark_and_jsonl_with_integral_float_labels(tmp_path: Path, hf_tokenizer: Any) -> None:
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("\ufefftext,label\r\ngood plot,2\r\nbad,0\r\n".encode("utf-8"))
    _, csv_labels = read_all(open_data(str(csv_path), options=opts(), class_names=None, tokenizer=hf_tokenizer))
    jsonl_text = '{"text": "good plot", "label": 2.0}\n{"text": "bad", "label": 0.0}\n'
    jsonl_path = _jsonl(tmp_path / "pandas.jsonl", jsonl_text)
    _, jsonl_labels = read_all(open_data(str(jsonl_path), options=opts(), class_names=None, tokenizer=hf_tokenizer))
    assert csv_labels.tolist() == jsonl_labels.tolist() == [2, 0]


def test_text_one_batch_equals_many_batches_and_two_reads_agree(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y} for t, y in SAMPLES])
    big = open_data(str(path), options=opts(batch_size=1000), class_names=None, tokenizer=hf_tokenizer)
    small = open_data(str(path), options=opts(batch_size=3), class_names=None, tokenizer=hf_tokenizer)
    big_batches, big_labels = read_all(big)
    small_batches, small_labels = read_all(small)
    again_batches, again_labels = read_all(small)
    assert len(big_batches) == 1 and len(small_batches) == 8
    assert unpadded_ids(big_batches) == unpadded_ids(small_batches) == unpadded_ids(again_batches)
    assert torch.equal(big_labels, small_labels) and torch.equal(small_labels, again_labels)


def test_text_limit_and_max_length(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y} for t, y in SAMPLES])
    data = open_data(str(path), options=opts(batch_size=4, limit=10, max_length=3), class_names=None,
                     tokenizer=hf_tokenizer)
    batches, labels = read_all(data)
    assert [len(b["input_ids"]) for b in batches] == [4, 4, 2]
    assert labels.tolist() == [y for _, y in SAMPLES[:10]]
    assert unpadded_ids(batches) == [oracle_ids(t, max_length=3) for t, _ in SAMPLES[:10]]
    assert max(b["input_ids"].shape[1] for b in batches) <= 3
    assert data.num_samples == 10


def test_tokenizer_directory_round_trips_and_matches_model_tokenizer(tmp_path: Path, tokenizer_dir: Path,
                                                                    hf_tokenizer: Any) -> None:
    text = "great acting long plot"
    assert hf_tokenizer.decode(hf_tokenizer(text)["input_ids"]) == text
    assert hf_tokenizer(text)["input_ids"] == oracle_ids(text)
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y} for t, y in SAMPLES])
    by_option = open_data(str(path), options=opts(tokenizer=str(tokenizer_dir), batch_size=7),
                          class_names=None, tokenizer=None)
    by_model = open_data(str(path), options=opts(batch_size=7), class_names=None, tokenizer=hf_tokenizer)
    for (a, ya), (b, yb) in zip(by_option.batches(), by_model.batches(), strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(ya, yb)
        decoded = hf_tokenizer.batch_decode(a["input_ids"], skip_special_tokens=True)
        assert [oracle_ids(t) for t in decoded] == unpadded_ids([a])


def test_tokenizer_from_callable_spec_overrides_model_tokenizer(tmp_path: Path, user_module, hf_tokenizer: Any) -> None:
    name = user_module(
        "import torch\n"
        "def make():\n"
        "    return lambda texts: {'lengths': torch.tensor([[len(t)] for t in texts])}\n"
    )
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": t, "label": y} for t, y in SAMPLES])
    data = open_data(str(path), options=opts(tokenizer=f"{name}:make", batch_size=10), class_names=None,
                     tokenizer=hf_tokenizer)
    batches, _ = read_all(data)
    assert torch.cat([b["lengths"] for b in batches])[:, 0].tolist() == [len(t) for t, _ in SAMPLES]


def test_text_file_is_streamed_not_read_up_front(tmp_path: Path, hf_tokenizer: Any) -> None:
    """A bad line far down the file surfaces only when reading reaches it, after the earlier batches came out."""
    rows = [json.dumps({"text": t, "label": y}) for t, y in SAMPLES] + ["{broken"]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = open_data(str(path), options=opts(batch_size=5), class_names=None, tokenizer=hf_tokenizer)
    batches = data.batches()
    first_inputs, first_labels = next(batches)
    assert first_labels.tolist() == [y for _, y in SAMPLES[:5]]
    with pytest.raises(DataError, match=rf"eval\.jsonl: line {len(SAMPLES) + 1}, column 2: malformed JSON"):
        list(batches)


# ---------------------------------------------------------------------------------------------- tensor files


def tensor_fixture(count: int = 37, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(count, 4, generator=gen, dtype=torch.float64),
            "mask": torch.randint(0, 2, (count, 4), generator=gen),
            "labels": torch.randint(0, 3, (count,), generator=gen)}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    if path.suffix == ".pt":
        torch.save(tensors, path)
    elif path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    return path


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_tensor_file_single_input(tmp_path: Path, suffix: str) -> None:
    tensors = tensor_fixture()
    del tensors["mask"]
    path = save_tensors(tmp_path / f"eval{suffix}", tensors)
    data = open_data(str(path), options=opts(batch_size=10), class_names=None, tokenizer=None)
    assert (data.format, data.num_samples) == (suffix[1:], 37)
    batches, labels = read_all(data)
    assert all(isinstance(b, torch.Tensor) and b.dtype == torch.float32 for b in batches)
    assert [len(b) for b in batches] == [10, 10, 10, 7]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), tensors["x"].numpy().astype(np.float32))
    np.testing.assert_array_equal(labels.numpy(), tensors["labels"].numpy())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_tensor_file_several_named_inputs_in_given_order(tmp_path: Path, suffix: str) -> None:
    tensors = tensor_fixture()
    path = save_tensors(tmp_path / f"eval{suffix}", tensors)
    data = open_data(str(path), options=opts(batch_size=16, inputs=["mask", "x"]), class_names=None, tokenizer=None)
    batches, labels = read_all(data)
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert torch.equal(torch.cat([b[0] for b in batches]), tensors["mask"])
    assert torch.equal(torch.cat([b[1] for b in batches]), tensors["x"].float())
    assert torch.equal(labels, tensors["labels"])


@pytest.mark.parametrize("label_name", ["label", "y", "targets"])
def test_tensor_file_label_name_fallbacks(tmp_path: Path, label_name: str) -> None:
    x, y = torch.arange(12.0).reshape(6, 2), torch.tensor([2, 0, 1, 1, 0, 2], dtype=torch.int32)
    path = save_tensors(tmp_path / "eval.pt", {"features": x, label_name: y})
    _, labels = read_all(open_data(str(path), options=opts(), class_names=None, tokenizer=None))
    assert labels.tolist() == y.tolist() and labels.dtype == torch.int64


def test_tensor_one_batch_equals_many_batches_limit_and_two_reads(tmp_path: Path) -> None:
    tensors = tensor_fixture()
    path = save_tensors(tmp_path / "eval.pt", tensors)
    big_x, big_y = read_all(open_data(str(path), options=opts(batch_size=1000, inputs=["x", "mask"]),
                                      class_names=None, tokenizer=None))
    small = open_data(str(path), options=opts(batch_size=3, inputs=["x", "mask"]), class_names=None, tokenizer=None)
    for _ in range(2):
        small_x, small_y = read_all(small)
        assert len(small_x) == 13
        for pos in range(2):
            assert torch.equal(torch.cat([b[pos] for b in big_x]), torch.cat([b[pos] for b in small_x]))
        assert torch.equal(big_y, small_y)
    limited = open_data(str(path), options=opts(batch_size=4, limit=9, inputs=["x"]), class_names=None,
                        tokenizer=None)
    assert limited.num_samples == 9
    lx, ly = read_all(limited)
    assert [len(b) for b in lx] == [4, 4, 1]
    assert torch.equal(torch.cat(lx), tensors["x"][:9].float())
    assert torch.equal(ly, tensors["labels"][:9])


def test_npz_string_labels_map_with_class_names(tmp_path: Path) -> None:
    path = tmp_path / "eval.npz"
    np.savez(path, x=np.eye(4, dtype=np.float32), labels=np.array(["pos", "neg", "neu", "2"]))
    _, labels = read_all(open_data(str(path), options=opts(), class_names=CLASSES, tokenizer=None))
    assert labels.tolist() == [2, 0, 1, 2]


def test_pt_never_unpickles_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        torch.save({"x": torch.zeros(2, 2), "labels": Evil()}, fh)
    with pytest.raises(DataError, match=r"evil\.pt: needs unsafe unpickling"):
        open_data(str(path), options=opts(), class_names=None, tokenizer=None)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- factories


def test_factory_map_dataset_of_pairs_with_kwargs_and_limit(user_module) -> None:
    name = user_module(
        "import torch\n"
        "from torch.utils.data import Dataset\n"
        "class Pairs(Dataset):\n"
        "    def __init__(self, n, width):\n"
        "        self.x = torch.arange(n * width, dtype=torch.float32).reshape(n, width)\n"
        "    def __len__(self):\n"
        "        return len(self.x)\n"
        "    def __getitem__(self, i):\n"
        "        return self.x[i], i % 3\n"
        "def make(n, width):\n"
        "    return Pairs(n, width)\n"
    )
    spec = f"{name}:make"
    data = open_data(spec, options=opts(batch_size=4, kwargs={"n": 10, "width": 2}), class_names=None, tokenizer=None)
    assert (data.format, data.path, data.sha256, data.num_samples) == ("factory", spec, None, 10)
    batches, labels = read_all(data)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), torch.arange(20.0).reshape(10, 2))
    assert labels.tolist() == [i % 3 for i in range(10)]
    limited = open_data(spec, options=opts(batch_size=4, limit=6, kwargs={"n": 10, "width": 2}),
                        class_names=None, tokenizer=None)
    assert limited.num_samples == 6
    _, limited_labels = read_all(limited)
    assert limited_labels.tolist() == labels[:6].tolist()


def test_factory_dataset_of_dicts_gives_kwargs_inputs_and_maps_class_names(user_module) -> None:
    name = user_module(
        "import torch\n"
        "from torch.utils.data import Dataset\n"
        "NAMES = ['neg', 'neu', 'pos']\n"
        "class Dicts(Dataset):\n"
        "    def __len__(self):\n"
        "        return 7\n"
        "    def __getitem__(self, i):\n"
        "        return {'input_ids': torch.full((3,), i), 'attention_mask': torch.ones(3, dtype=torch.long),\n"
        "                'label': NAMES[i % 3]}\n"
        "def make():\n"
        "    return Dicts()\n"
    )
    data = open_data("ignored-path", options=opts(format="factory", factory=f"{name}:make", batch_size=5),
                     class_names=CLASSES, tokenizer=None)
    batches, labels = read_all(data)
    assert all(set(b) == {"input_ids", "attention_mask"} for b in batches)
    assert torch.cat([b["input_ids"] for b in batches])[:, 0].tolist() == list(range(7))
    assert labels.tolist() == [i % 3 for i in range(7)]


def test_factory_iterable_dataset_is_batched(user_module) -> None:
    name = user_module(
        "import torch\n"
        "from torch.utils.data import IterableDataset\n"
        "class Stream(IterableDataset):\n"
        "    def __iter__(self):\n"
        "        for i in range(11):\n"
        "            yield torch.tensor([float(i)]), i % 2\n"
        "def make():\n"
        "    return Stream()\n"
    )
    data = open_data(f"{name}:make", options=opts(batch_size=4, limit=9), class_names=None, tokenizer=None)
    assert data.num_samples is None
    batches, labels = read_all(data)
    assert [len(b) for b in batches] == [4, 4, 1]
    assert torch.cat(batches)[:, 0].tolist() == [float(i) for i in range(9)]
    assert labels.tolist() == [i % 2 for i in range(9)] and data.num_samples == 9


def test_factory_generator_of_batches_reads_twice_in_same_order(user_module) -> None:
    name = user_module(
        "import torch\n"
        "def batches(sizes):\n"
        "    start = 0\n"
        "    for size in sizes:\n"
        "        x = torch.arange(start, start + size, dtype=torch.float32)[:, None]\n"
        "        y = torch.arange(start, start + size) % 4\n"
        "        yield (x, x * 2), y\n"
        "        start += size\n"
    )
    data = open_data(f"{name}:batches", options=opts(kwargs={"sizes": [3, 5, 2]}), class_names=None, tokenizer=None)
    first_x, first_y = read_all(data)
    second_x, second_y = read_all(data)
    assert [len(b[0]) for b in first_x] == [3, 5, 2]
    assert all(isinstance(b, tuple) for b in first_x)
    assert torch.equal(torch.cat([b[1] for b in first_x])[:, 0], torch.arange(10.0) * 2)
    assert torch.equal(first_y, torch.arange(10) % 4) and torch.equal(first_y, second_y)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first_x, second_x, strict=True))
    assert data.num_samples == 10
    limited = open_data(f"{name}:batches", options=opts(kwargs={"sizes": [3, 5, 2]}, limit=6), class_names=None,
                        tokenizer=None)
    lx, ly = read_all(limited)
    assert [len(b[0]) for b in lx] == [3, 3] and torch.equal(ly, torch.arange(6) % 4)


# ---------------------------------------------------------------------------------------------- bad input


def _jsonl(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _pt(path: Path, obj: Any) -> Path:
    torch.save(obj, path)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def _npy(path: Path) -> Path:
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    return path


def _truncated_pt(path: Path) -> Path:
    torch.save({"x": torch.zeros(50, 50), "labels": torch.zeros(50, dtype=torch.long)}, path)
    path.write_bytes(path.read_bytes()[:300])
    return path


_X = torch.zeros(4, 2)
_Y = torch.tensor([0, 1, 0, 1])

def _npz_with_text_member(path: Path) -> None:
    import zipfile

    _npz(path, x=_X.numpy(), labels=_Y.numpy())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", b"not an array")


BAD_FILES = [
    # (id, file name, writer, options, class_names, expected message pattern)
    ("missing", "absent.jsonl", None, {}, None, r"absent\.jsonl: no such data file"),
    ("empty", "e.jsonl", lambda p: _jsonl(p, ""), {}, None, r"e\.jsonl: the data file is empty"),
    ("blank-lines-only", "b.jsonl", lambda p: _jsonl(p, "\n \n\n"), {}, None, r"b\.jsonl: no samples"),
    ("csv-header-only", "h.csv", lambda p: _jsonl(p, "text,label\n"), {}, None, r"h\.csv: no samples"),
    ("malformed-json", "m.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": 0}\n\n{"text": "b", label: 1}\n'),
     {}, None, r"m\.jsonl: line 3, column 15: malformed JSON"),
    ("json-array", "arr.json", lambda p: _jsonl(p, '[{"text": "a", "label": 0}]\n'), {}, None,
     r"arr\.json: line 1: expected a JSON object, found list; .*JSON Lines"),
    ("json-not-object", "n.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": 0}\n[1, 2]\n'), {}, None,
     r"n\.jsonl: line 2: expected a JSON object, found list"),
    ("jsonl-missing-label", "ml.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": 0}\n{"text": "b", "y": 1}\n'),
     {}, None, r"ml\.jsonl: line 2: no key 'label' \(found: text, y\)"),
    ("csv-missing-text-column", "c.csv", lambda p: write_csv(p, ["sentence", "label"], [["a", 0]]), {}, None,
     r"c\.csv: line 1 \(header\): no column 'text' \(found: sentence, label\)"),
    ("csv-ragged-row", "r.csv", lambda p: _jsonl(p, "text,label\na,0\nb,1,extra\n"), {}, None,
     r"r\.csv: line 3: expected 2 fields \(text, label\), found 3"),
    ("unknown-class-name", "u.jsonl",
     lambda p: _jsonl(p, '{"text": "a", "label": "pos"}\n{"text": "b", "label": "meh"}\n'),
     {}, CLASSES, r"u\.jsonl: line 2, column 'label': label 'meh' is neither an integer nor a known class name "
                  r"\(known: neg, neu, pos\)"),
    ("name-without-class-names", "w.csv", lambda p: _jsonl(p, "text,label\na,pos\n"), {}, None,
     r"w\.csv: line 2, column 'label': label 'pos' is not an integer, and no class names.*class_names"),
    ("negative-label", "neg.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": -1}\n'), {}, None,
     r"neg\.jsonl: line 1, column 'label': label -1 is negative"),
    ("fractional-label", "f.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": 1.5}\n'), {}, None,
     r"f\.jsonl: line 1, column 'label': label 1\.5 is not an integer"),
    ("text-not-string", "t.jsonl", lambda p: _jsonl(p, '{"text": 5, "label": 1}\n'), {}, None,
     r"t\.jsonl: line 1: 'text' is int, expected a string"),
    ("bad-utf8", "bad.csv", lambda p: _bytes(p, b"text,label\ngood,1\nbad \xff\xfe,0\n"), {}, None,
     r"bad\.csv: line 3, byte 5: not valid UTF-8"),
    ("tensor-length-mismatch", "len.pt", lambda p: _pt(p, {"x": torch.zeros(5, 2), "labels": _Y}), {}, None,
     r"len\.pt: tensor 'x' has 5 rows but the labels have 4"),
    ("labels-2d", "l2.pt", lambda p: _pt(p, {"x": _X, "labels": _Y[:, None]}), {}, None,
     r"l2\.pt: tensor 'labels': labels must be 1-D.*shape \(4, 1\)"),
    ("labels-float", "lf.safetensors", lambda p: save_tensors(p, {"x": _X, "labels": _Y.float()}), {}, None,
     r"lf\.safetensors: tensor 'labels': labels must be integer class indices, found dtype float32"),
    ("labels-negative", "ln.npz", lambda p: _npz(p, x=_X.numpy(), labels=np.array([0, 1, -2, 0])), {}, None,
     r"ln\.npz: tensor 'labels': label -2 at sample 2 is negative"),
    ("labels-uint64-huge", "lu.npz",
     lambda p: _npz(p, x=_X.numpy(), labels=np.array([0, 1, 2**63 + 1, 0], dtype=np.uint64)), {}, None,
     r"lu\.npz: tensor 'labels': label 9223372036854775809 at sample 2 is beyond any class index"),
    ("jsonl-huge-integer", "hi.jsonl", lambda p: _jsonl(p, '{"text": "a", "label": 0}\n{"text": "b", "label": ' + "9" * 5001
                                                        + "}\n"), {}, None,
     r"hi\.jsonl: line 2: unreadable JSON value: Exceeds the limit \(4300 digits\)"),
    ("jsonl-deep", "deep.jsonl", lambda p: _jsonl(p, '{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": 0}\n'),
     {}, None, r"deep\.jsonl: line 1: JSON nested too deeply"),
    ("pt-not-a-dict", "plain.pt", lambda p: _pt(p, _X), {}, None, r"plain\.pt: expected a dict of named tensors"),
    ("pt-truncated", "trunc.pt", _truncated_pt, {}, None, r"trunc\.pt: not a readable PyTorch file"),
    ("npz-corrupt", "c.npz", lambda p: _bytes(p, b"PK\x03\x04 not really a zip"), {}, None,
     r"c\.npz: not a readable \.npz file"),
    ("npz-object-array", "o.npz",
     lambda p: _npz(p, x=np.array([{"a": 1}, None], dtype=object), labels=np.zeros(2, int)),
     {}, None, r"o\.npz: array 'x' holds Python objects"),
    ("npz-non-npy-member", "m.npz", _npz_with_text_member, {}, None,
     r"m\.npz: member 'notes\.txt' is not a \.npy array"),
    ("npy-not-npz", "single.npz", _npy, {}, None,
     r"single\.npz: a single \.npy array, expected an \.npz archive"),
    ("safetensors-corrupt", "c.safetensors", lambda p: _bytes(p, b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"), {},
     None, r"c\.safetensors: not a readable safetensors file"),
    ("several-inputs-unnamed", "two.pt", lambda p: _pt(p, {"a": _X, "b": _X, "labels": _Y}), {}, None,
     r"two\.pt: expected exactly one input tensor besides the labels 'labels', found a, b; set data\.inputs"),
    ("input-name-missing", "in.pt", lambda p: _pt(p, {"a": _X, "labels": _Y}), {"inputs": ["a", "mask"]}, None,
     r"in\.pt: no tensor 'mask' \(data\.inputs\); found: a, labels"),
    ("no-label-tensor", "nl.pt", lambda p: _pt(p, {"a": _X, "target": _Y}), {}, None,
     r"nl\.pt: no label tensor \(tried 'labels', 'label', 'y', 'targets'; found: a, target\)"),
    ("named-labels-missing", "nn.pt", lambda p: _pt(p, {"a": _X, "labels": _Y}), {"labels": "cls"}, None,
     r"nn\.pt: no tensor 'cls' \(data\.labels\); found: a, labels"),
    ("empty-tensors", "z.pt", lambda p: _pt(p, {"x": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}),
     {}, None, r"z\.pt: no samples"),
    ("unknown-format", "data.bin", lambda p: _bytes(p, b"\x00\x00 what is this"), {}, None,
     r"data\.bin: cannot tell the data format"),
]


@pytest.mark.parametrize(("name", "writer", "options", "class_names", "pattern"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_data_raises_data_error_naming_file_and_place(
    tmp_path: Path, hf_tokenizer: Any, name: str, writer: Any, options: dict[str, Any],
    class_names: tuple[str, ...] | None, pattern: str,
) -> None:
    path = tmp_path / name
    if writer is not None:
        writer(path)

    def read() -> None:
        data = open_data(str(path), options=opts(batch_size=2, **options), class_names=class_names,
                         tokenizer=hf_tokenizer)
        read_all(data)

    with pytest.raises(DataError, match=pattern):
        read()


def test_text_without_tokenizer_says_how_to_provide_one(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "good", "label": 1}])
    with pytest.raises(DataError, match=r"needs a tokenizer: set data\.tokenizer"):
        open_data(str(path), options=opts(), class_names=None, tokenizer=None)


def test_tokenizer_without_pad_token_is_rejected(tmp_path: Path, tokenizer_dir: Path) -> None:
    import shutil

    no_pad = tmp_path / "nopad"
    shutil.copytree(tokenizer_dir, no_pad)
    (no_pad / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}), encoding="utf-8")
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "good", "label": 1}])
    with pytest.raises(DataError, match=r"nopad: has no padding token"):
        open_data(str(path), options=opts(tokenizer=str(no_pad)), class_names=None, tokenizer=None)


def test_bad_tokenizer_output_names_the_tokenizer(tmp_path: Path, user_module) -> None:
    name = user_module("def make():\n    return lambda texts: [len(t) for t in texts]\n")
    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "good", "label": 1}])
    data = open_data(str(path), options=opts(tokenizer=f"{name}:make"), class_names=None, tokenizer=None)
    with pytest.raises(DataError, match=rf"eval\.jsonl: lines 1-1: tokenizer '{name}:make' returned list"):
        read_all(data)


BAD_FACTORIES = [
    # (id, module source (None: no module written), spec suffix, options, expected message pattern)
    ("module-missing", None, "no_such_module_xyz:make", {}, r"data factory 'no_such_module_xyz:make': cannot import"),
    ("attribute-missing", "x = 1\n", ":make", {}, r"has no attribute 'make'"),
    ("not-callable", "make = 3\n", ":make", {}, r"'make' is a int, expected a callable"),
    ("factory-raises", "def make(n):\n    raise RuntimeError('boom')\n", ":make", {"kwargs": {"n": 1}},
     r"calling it with data\.kwargs \['n'\] failed: RuntimeError: boom"),
    ("returns-non-iterable", "def make():\n    return 42\n", ":make", {}, r"returned a int, expected a torch Dataset"),
    ("empty-dataset", "from torch.utils.data import Dataset\nclass D(Dataset):\n    def __len__(self):\n"
     "        return 0\n    def __getitem__(self, i):\n        raise IndexError\ndef make():\n    return D()\n",
     ":make", {}, r"no samples \(its Dataset has length 0\)"),
    ("yields-nothing", "def make():\n    return iter([])\n", ":make", {}, r"no samples \(it yielded no batches\)"),
    ("triple-samples", "import torch\nfrom torch.utils.data import Dataset\nclass D(Dataset):\n"
     "    def __len__(self):\n        return 3\n    def __getitem__(self, i):\n"
     "        return torch.zeros(2), torch.zeros(2), 1\ndef make():\n    return D()\n",
     ":make", {}, r"batch 0 \(samples from 0\): expected \(inputs, labels\).*found a list of 3"),
    ("getitem-raises", "import torch\nfrom torch.utils.data import Dataset\nclass D(Dataset):\n"
     "    def __len__(self):\n        return 3\n    def __getitem__(self, i):\n        raise KeyError(i)\n"
     "def make():\n    return D()\n", ":make", {}, r"reading batch 0 failed: KeyError: 0"),
    ("rows-mismatch", "import torch\ndef make():\n    return [(torch.zeros(3, 2), torch.tensor([0, 1]))]\n",
     ":make", {}, r"batch 0 \(samples from 0\): inputs have \[3\] rows but there are 2 labels"),
    ("dict-without-label",
     "import torch\ndef make():\n    return [{'x': torch.zeros(2, 2), 'cls': torch.tensor([0, 1])}]\n",
     ":make", {}, r"batch 0 .*no label key \(tried 'labels', 'label', 'y', 'targets'; found: x, cls\)"),
]


@pytest.mark.parametrize(("source", "suffix", "options", "pattern"), [c[1:] for c in BAD_FACTORIES],
                         ids=[c[0] for c in BAD_FACTORIES])
def test_bad_factory_raises_data_error_naming_it(user_module, source: str | None, suffix: str,
                                                 options: dict[str, Any], pattern: str) -> None:
    spec = suffix if source is None else user_module(source) + suffix
    with pytest.raises(DataError, match=pattern):
        read_all(open_data(spec, options=opts(**options), class_names=None, tokenizer=None))


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    path = save_tensors(tmp_path / "eval.pt", {"x": _X, "labels": _Y})
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        open_data(str(path), options=opts(batch_size=0), class_names=None, tokenizer=None)
    with pytest.raises(ConfigError, match=r"data\.format: unknown format 'parquet'"):
        open_data(str(path), options=opts(format="parquet"), class_names=None, tokenizer=None)
    with pytest.raises(ConfigError, match=r"no factory is given"):
        open_data(None, options=opts(format="factory"), class_names=None, tokenizer=None)


def test_explicit_format_overrides_extension(tmp_path: Path, hf_tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "eval.txt", [{"text": "good movie", "label": 2}])
    data = open_data(str(path), options=opts(format="jsonl"), class_names=None, tokenizer=hf_tokenizer)
    batches, labels = read_all(data)
    assert unpadded_ids(batches) == [oracle_ids("good movie")] and labels.tolist() == [2]


def test_importing_gate_data_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, gate.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)



def test_an_unreadable_data_file_is_a_data_error(tmp_path: Path, hf_tokenizer: Any, monkeypatch) -> None:
    """EACCES (which root never sees, so the OS's answer is simulated at open()) names the file, not a traceback."""
    import builtins

    path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "good", "label": 1}])
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(DataError, match=r"eval\.jsonl: cannot read the data file: Permission denied"):
        read_all(open_data(str(path), options=opts(), class_names=None, tokenizer=hf_tokenizer))


# ------------------------------------------------------------------------------------ readers seek to a shard


def _text_files(tmp_path: Path) -> list[Path]:
    """103 samples as JSON Lines (blank, whitespace and NBSP-only lines between) and as CSV (multi-line records)."""
    rows = [{"text": f"t{i} " + "good " * (i % 4), "label": ["a", "b"][i % 2], "src": f"s{i % 3}"} for i in range(103)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(json.dumps(row))
        if i % 10 == 0:
            lines.append("   ")
        if i % 17 == 0:
            lines.append("\u00a0")
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "e.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "src"])
        for i, row in enumerate(rows):
            writer.writerow([row["text"] + ("\nsecond line" if i % 7 == 0 else ""), row["label"], row["src"]])
    return [jsonl, path]


@pytest.mark.parametrize("limit", [None, 50])
def test_text_readers_seek_to_their_shard_without_tokenizing_the_others(tmp_path: Path, monkeypatch, limit) -> None:
    """Every shard's batches are the single read's batches (labels, lines, fields); another shard's batch is a
    Skipped of the right size, and its texts never reach the tokenizer."""
    from gate.data import Skipped
    from gate.sharding import Shard
    from tests import slice_world

    tokenized: list[str] = []

    def counting():
        def encode(texts):
            tokenized.extend(texts)
            return slice_world.features(texts)
        return encode

    monkeypatch.setattr(slice_world, "tokenizer", counting)
    options = {"batch_size": 8, "limit": limit, "tokenizer": "tests.slice_world:tokenizer"}
    for path in _text_files(tmp_path):
        def load() -> EvalData:
            return open_data(str(path), options=options, class_names=("a", "b"), tokenizer=None)

        full = [(lab.tolist(), meta.where, meta.fields["src"], inp["x"].tolist())
                for inp, lab, meta in load().batches_with_meta()]
        assert sum(len(b[0]) for b in full) == (limit or 103)
        for count in (2, 3):
            got = {}
            for s in range(count):
                data = load()
                tokenized.clear()
                for i, (inp, lab, meta) in enumerate(data.batches_with_meta(owns=Shard(s, count).owns)):
                    if isinstance(inp, Skipped):
                        assert not Shard(s, count).owns(i) and inp.size == len(full[i][0])
                    else:
                        got[i] = (lab.tolist(), meta.where, meta.fields["src"], inp["x"].tolist())
                assert data.num_samples == (limit or 103)
                mine = sum(len(full[i][0]) for i in range(len(full)) if Shard(s, count).owns(i))
                assert len(tokenized) == mine                      # only this shard's texts were tokenized
            assert [got[i] for i in range(len(full))] == full


def test_tensor_reader_seeks_to_its_shard(tmp_path: Path) -> None:
    from gate.data import Skipped
    from gate.sharding import Shard

    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(70 * 3, dtype=np.float32).reshape(70, 3), labels=np.arange(70) % 2,
             group=np.arange(70) % 5)
    full = [(inp.tolist(), lab.tolist(), meta.fields["group"])
            for inp, lab, meta in open_data(str(path), options={"batch_size": 16, "inputs": ["x"]}, class_names=None,
                                            tokenizer=None).batches_with_meta()]
    got = {}
    for s in range(2):
        for i, (inp, lab, meta) in enumerate(open_data(str(path), options={"batch_size": 16, "inputs": ["x"]}, class_names=None,
                                                       tokenizer=None).batches_with_meta(owns=Shard(s, 2).owns)):
            if isinstance(inp, Skipped):
                assert (lab, meta) == (None, None) and inp.size == len(full[i][1])
            else:
                got[i] = (inp.tolist(), lab.tolist(), meta.fields["group"])
    assert [got[i] for i in range(len(full))] == full and len(full) == 5


class _Counting(torch.utils.data.Dataset):
    """A map-style Dataset that records which samples were fetched."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self.y = torch.arange(n) % 2
        self.touched: list[int] = []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        self.touched.append(int(i))
        return self.x[i], self.y[i]


def _owned_samples(n: int, size: int, shard: Any) -> list[int]:
    return [j for b, start in enumerate(range(0, n, size)) if shard.owns(b) for j in range(start, min(start + size, n))]


@pytest.mark.parametrize("kind", ["Dataset", "DataLoader", "list", "Dataset with limit"])
def test_in_memory_data_seeks_to_its_shard_without_touching_the_others(kind: str) -> None:
    """A Dataset (and a plain DataLoader over one) fetches only the shard's own samples; a list of batches yields
    the others' sizes; together the shards' batches are the unsharded ones, in place."""
    from torch.utils.data import DataLoader

    from gate.data import Skipped
    from gate.sharding import Shard

    n, size = 70, 16
    limit = 40 if kind == "Dataset with limit" else None

    def source(data: _Counting) -> Any:
        if kind == "DataLoader":
            return DataLoader(data, batch_size=size)
        if kind == "list":
            return [(data.x[i:i + size], data.y[i:i + size]) for i in range(0, n, size)]
        return data

    def reader(data: _Counting) -> Any:
        return open_data(source(data), options=opts(batch_size=size, limit=limit), class_names=None, tokenizer=None)

    whole = _Counting(n)
    full = [(inp.tolist(), lab.tolist()) for inp, lab, _ in reader(whole).batches_with_meta()]
    total = min(n, limit or n)
    assert sum(len(lab) for _, lab in full) == total
    got = {}
    for s in range(2):
        shard = Shard(s, 2)
        data = _Counting(n)
        opened = reader(data)
        for i, (inp, lab, meta) in enumerate(opened.batches_with_meta(owns=shard.owns)):
            if isinstance(inp, Skipped):
                assert not shard.owns(i) and (lab, meta) == (None, None) and inp.size == len(full[i][1])
            else:
                assert shard.owns(i)
                got[i] = (inp.tolist(), lab.tolist())
        assert opened.num_samples == total
        if kind != "list":                      # a list's batches exist already: nothing is fetched from data
            assert sorted(data.touched) == _owned_samples(total, size, shard)
    assert [got[i] for i in range(len(full))] == full


def test_in_memory_data_that_cannot_seek_is_read_whole() -> None:
    """A shuffled DataLoader and a generator: every batch is made (the runner skips the others'), none Skipped."""
    from torch.utils.data import DataLoader

    from gate.data import Skipped
    from gate.sharding import Shard

    data = _Counting(48)
    torch.manual_seed(0)
    shuffled = open_data(DataLoader(data, batch_size=16, shuffle=True), options=opts(batch_size=16),
                         class_names=None, tokenizer=None)
    batches = list(shuffled.batches_with_meta(owns=Shard(1, 2).owns))
    assert len(batches) == 3 and not any(isinstance(inp, Skipped) for inp, _, _ in batches)
    assert sorted(data.touched) == list(range(48))


# --- bounded reading of tensor archives ---------------------------------------------------------------------------

def _npz_of_zeros(path: Path, *, rows: int, labels: int) -> Path:
    """A deflated .npz whose 'x.npy' is rows x 64 float32 zeros, streamed (never held whole), with `labels` labels."""
    import zipfile

    from numpy.lib import format as npy_format

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (rows, 64)})
            chunk = b"\0" * (1 << 22)
            for start in range(0, rows * 64 * 4, len(chunk)):
                member.write(chunk[:rows * 64 * 4 - start])
        with archive.open("labels.npy", "w") as member:
            np.save(member, np.zeros(labels, dtype=np.int64))
    return path


def _declare_size(path: Path, member: str, file_size: int) -> None:
    """Rewrite the zip directory so that `member` declares `file_size` inflated bytes (its content unchanged)."""
    import zipfile

    source = path.with_suffix(".orig")
    path.rename(source)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            with old.open(info) as data, new.open(info, "w", force_zip64=True) as copy:
                copy.write(data.read())
        new.getinfo(member).file_size = file_size      # the central directory is written from this at close
    source.unlink()


def _peak_python_bytes(read: Any) -> int:
    """The peak of Python's and numpy's allocations (tracemalloc sees both) while `read()` runs."""
    import tracemalloc

    tracemalloc.start()
    try:
        read()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_npz_rows_beyond_the_labels_are_refused_from_the_headers_before_inflating(tmp_path: Path) -> None:
    """256 MiB of zeros (within the inflation bound) for 100 labels: the .npy headers say so, nothing is inflated."""
    path = _npz_of_zeros(tmp_path / "rows.npz", rows=1 << 20, labels=100)

    def read() -> None:
        with pytest.raises(DataError, match=r"rows\.npz: tensor 'x' has 1048576 rows but the labels have 100"):
            open_data(str(path), options=opts(), class_names=None, tokenizer=None)

    assert _peak_python_bytes(read) < 16 << 20


def test_an_npz_whose_directory_declares_a_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    """x.npy declares 8 GiB inflated from a file of a few KB: refused from the zip directory, naming the member."""
    path = _npz(tmp_path / "bomb.npz", x=_X.numpy(), labels=_Y.numpy())
    _declare_size(path, "x.npy", 8 << 30)
    with pytest.raises(DataError, match=r"bomb\.npz: the zip archive's members declare \d+ bytes .*'x\.npy', "
                                        r"8589934592 bytes\): refusing to inflate it"):
        open_data(str(path), options=opts(), class_names=None, tokenizer=None)


@pytest.mark.parametrize(("declared", "pattern"), [
    (8192, r"short\.npz: array 'x': its \.npy header declares shape \(4096, 64\) of float32 \(1048576 bytes\) but "
           r"the archive's member 'x\.npy' holds 8064 bytes"),
    # so few that reading the header reaches the declared end: zipfile stops there and the CRC-32 fails
    (200, r"short\.npz: not a readable \.npz file \(corrupt or truncated\?\): BadZipFile: Bad CRC-32 for file 'x\.npy'"),
])
def test_an_npz_member_that_declares_less_than_it_holds_is_refused_unread(
    tmp_path: Path, declared: int, pattern: str,
) -> None:
    """The zip directory declares fewer bytes than the .npy header (1 MiB): refused from the header, or by zipfile's
    stop at the declared size; what inflates never exceeds what was declared."""
    path = _npz_of_zeros(tmp_path / "short.npz", rows=4096, labels=4096)
    _declare_size(path, "x.npy", declared)
    with pytest.raises(DataError, match=pattern):
        open_data(str(path), options=opts(), class_names=None, tokenizer=None)


def test_highly_compressible_evaluation_data_still_loads(tmp_path: Path) -> None:
    """One-hot inputs and sparse images compress 100x and more with np.savez_compressed: within the allowance they
    load, value for value."""
    import zipfile

    rng = np.random.default_rng(0)
    rows = 20_000
    one_hot = np.eye(200, dtype=np.float32)[rng.integers(0, 200, rows)]
    sparse = np.zeros((rows, 64), dtype=np.float32)
    sparse[rng.integers(0, rows, 50), rng.integers(0, 64, 50)] = 1.0
    labels = rng.integers(0, 3, rows)
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, x=one_hot, sparse=sparse, labels=labels)
    with zipfile.ZipFile(path) as archive:
        ratio = sum(i.file_size for i in archive.infolist()) / path.stat().st_size
    assert ratio > 64                                   # beyond the ratio alone: the allowance is what admits it
    data = open_data(str(path), options=opts(inputs=["x", "sparse"]), class_names=None, tokenizer=None)
    inputs, got = read_all(data)
    assert torch.equal(torch.cat([b[0] for b in inputs]), torch.from_numpy(one_hot))
    assert torch.equal(torch.cat([b[1] for b in inputs]), torch.from_numpy(sparse))
    assert got.tolist() == labels.tolist()
