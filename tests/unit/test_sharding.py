"""gate.sharding: shard ownership, the state file as data, the merge by addition; the checks' state protocol."""
from __future__ import annotations

import numpy as np
import pytest

import gate
from gate.checks import REGISTRY, check_class
from gate.errors import ConfigError, DataError
from gate.metrics import PairedCounts
from gate.sharding import (
    MAX_STATE_BYTES,
    RunState,
    Shard,
    digest,
    merge_states,
    parse_shard,
    state_from_bytes,
)


def test_parse_shard_is_one_based():
    assert parse_shard("1/4") == Shard(0, 4)
    assert parse_shard("4/4") == Shard(3, 4)
    for bad in ("0/4", "5/4", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_shards_partition_the_batches():
    owners = [[s for s in range(3) if Shard(s, 3).owns(b)] for b in range(11)]
    assert owners == [[b % 3] for b in range(11)]


def _model(role: str, sha: str) -> dict:
    return {"role": role, "path": f"{role}.pt", "format": "state_dict", "sha256": sha, "size_bytes": 10,
            "parameters": 3, "num_classes": 3, "class_names": None, "columns": None, "output": "logits",
            "dtype": "float32", "checkpoint_dtype": "float32", "cast": None}


def _meta(index: int, count: int, **over):
    """A complete, valid header (every field check_header asks for); `over` replaces fields."""
    role = {"names": None, "source": None, "generic": False}
    meta = {"format": "gate-state", "version": 1, "gate_version": gate.__version__, "config_digest": digest({}),
            "data_digest": "d" * 64, "shard": [index, count], "num_classes": 3, "class_names": ["0", "1", "2"],
            "num_samples": 10, "num_batches": 1, "task": "classification",
            "models": [_model("baseline", "a"), _model("candidate", "b")],
            "data": {"path": "eval.npz", "format": "npz", "sha256": "d" * 64, "num_samples": 10, "num_batches": 1,
                     "batch_size": 64},
            "config": {}, "source": None,
            "classes": {"names": ["0", "1", "2"], "columns": None, "baseline": role, "candidate": role,
                        "renamed": [], "by_name": False, "warnings": []},
            "notes": [], "checks": [], "environment": {"python": "3.11", "threads": 2}}
    meta.update(over)
    return meta


def _state(index: int, count: int, counts: PairedCounts, **arrays) -> RunState:
    codes, n = counts.arrays()
    total = int(n.sum())
    meta = _meta(index, count, num_samples=total)
    meta["data"]["num_samples"] = total
    return RunState(meta=meta, arrays={"counts.codes": codes, "counts.n": n, **arrays})


def test_merged_counts_equal_the_counts_of_all_the_data():
    rng = np.random.default_rng(0)
    y, pb, pc = (rng.integers(0, 3, 1000) for _ in range(3))
    whole = PairedCounts(3)
    whole.update(y, pb, pc)
    parts = []
    for i, sl in enumerate((slice(0, 100), slice(100, 650), slice(650, 1000))):
        c = PairedCounts(3)
        c.update(y[sl], pb[sl], pc[sl])
        parts.append(_state(i, 3, c, **{"sanity.sum": np.array([1.5, 2.0]), "sanity.n": np.array([i], np.int64)}))
    merged = merge_states([parts[2], parts[0], parts[1]], names=["c", "a", "b"])
    codes, n = whole.arrays()
    np.testing.assert_array_equal(merged.arrays["counts.codes"], codes)
    np.testing.assert_array_equal(merged.arrays["counts.n"], n)
    np.testing.assert_array_equal(merged.arrays["sanity.sum"], [4.5, 6.0])
    assert merged.arrays["sanity.n"].dtype == np.int64 and merged.arrays["sanity.n"].tolist() == [3]
    assert merged.meta["num_samples"] == 1000


def test_state_round_trips_through_bytes():
    c = PairedCounts(3)
    c.update(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([0, 2, 2]))
    state = _state(0, 1, c, **{"x.f": np.array([[0.1, 1e-300]])})
    back = state_from_bytes(state.to_bytes(), where="s")
    assert back.meta["shard"] == [0, 1]
    for key, value in state.arrays.items():
        np.testing.assert_array_equal(back.arrays[key], value)
        assert back.arrays[key].dtype == value.dtype


def test_state_bytes_are_checked_as_data():
    c = PairedCounts(2)
    c.update(np.array([0]), np.array([0]), np.array([1]))
    good = _state(0, 1, c).to_bytes()
    with pytest.raises(DataError, match="not a gate state file"):
        state_from_bytes(b"\x00" * 64, where="s")
    with pytest.raises(DataError, match="larger than a gate state"):
        state_from_bytes(b"\x00" * (MAX_STATE_BYTES + 1), where="s")
    from safetensors.numpy import save

    with pytest.raises(DataError, match="dtype"):
        state = _state(0, 1, c)
        state.arrays["x"] = np.zeros(2, dtype=np.float32)
        state_from_bytes(state.to_bytes(), where="s")
    with pytest.raises(DataError, match="version"):
        state_from_bytes(save({"a": np.zeros(1)}, metadata={"gate_state": '{"format": "gate-state", "version": 9}'}),
                         where="s")
    flipped = bytearray(good)
    flipped[-1] ^= 1
    with pytest.raises(DataError, match="SHA-256"):
        state_from_bytes(bytes(flipped), where="s")


def test_merge_refuses_shards_of_other_runs():
    c = PairedCounts(3)
    c.update(np.array([0]), np.array([0]), np.array([0]))
    a, b = _state(0, 2, c), _state(1, 2, c)
    b.meta["data_digest"] = "e" * 64
    with pytest.raises(DataError, match="data differs"):
        merge_states([a, b], names=["a", "b"])
    b = _state(1, 2, c)
    b.meta["models"] = [{"sha256": "a"}, {"sha256": "other"}]
    with pytest.raises(DataError, match="checkpoints differ"):
        merge_states([a, b], names=["a", "b"])
    with pytest.raises(DataError, match="different splits"):
        merge_states([a, _state(1, 3, c)], names=["a", "b"])


def test_paired_counts_from_arrays_refuses_impossible_counts():
    for codes, n in (([0, 0], [1, 1]), ([27], [1]), ([-1], [1]), ([3], [0])):
        with pytest.raises(ValueError):
            PairedCounts.from_arrays(3, np.array(codes), np.array(n))


def test_every_check_declares_how_it_shards():
    """A check that keeps streamed state says whether it merges; none merges by accident."""
    declared = {name: check_class(name).sharding for name in REGISTRY}
    assert declared["sanity"] == declared["accuracy"] == declared["per_class"] == declared["flips"] == "merge"
    assert declared["slices"] == declared["cases"] == declared["onnx"] == declared["drift"] == "merge"
    assert declared["latency"] == "rank0"
    from gate.checks.base import Check

    class Undeclared(Check):
        name = "x"

        def compute(self):  # pragma: no cover - never computed
            raise AssertionError

    assert Undeclared.sharding not in ("merge", "rank0")


def test_sanity_state_sums_to_the_first_shards_figures():
    from gate.checks.sanity import SanityCheck

    opts = {"non_finite": True, "determinism": True, "batch_invariance": True, "samples": 4, "atol": 1e-6,
            "rtol": 1e-5, "class_names": True}
    first, other, merged = (SanityCheck(opts, ctx=None) for _ in range(3))
    first.non_finite.update(baseline=2, candidate=0)
    first.values.update(baseline=30, candidate=30)
    first.determinism.update(baseline=0.0, candidate=0.5)
    first.determinism_ok.update(baseline=True, candidate=False)
    other.non_finite.update(baseline=1, candidate=3)
    other.values.update(baseline=12, candidate=12)
    states = [first.state(), other.state()]
    merged.load_state({k: states[0][k] + states[1][k] for k in states[0]})
    assert merged.non_finite == {"baseline": 3, "candidate": 3}
    assert merged.values == {"baseline": 42, "candidate": 42}
    assert merged.determinism == {"baseline": 0.0, "candidate": 0.5}
    assert merged.determinism_ok == {"baseline": True, "candidate": False}
    assert merged.invariance == {}
    with pytest.raises(ValueError, match="2 shards"):
        merged.load_state({k: states[0][k] * 2 for k in states[0]})


def test_rows_are_concatenated_in_global_sample_order_and_the_rest_summed():
    """`rows.` keys: every shard's rows, ordered by rows.index, equal the rows of all the data in one process."""
    from gate.sharding import Shard as S

    rng = np.random.default_rng(1)
    n, batch, count = 203, 16, 3
    margin, label = rng.normal(size=(n, 4)), rng.integers(0, 5, n)
    c = PairedCounts(3)
    c.update(np.array([0]), np.array([0]), np.array([0]))
    states = []
    for s in range(count):
        rows = np.concatenate([np.arange(b, min(b + batch, n)) for b in range(0, n, batch)
                               if S(s, count).owns(b // batch)]).astype(np.int64)
        states.append(_state(s, count, c, **{"scores.rows.index": rows, "scores.rows.margin": margin[rows],
                                             "scores.rows.label": label[rows], "scores.n": np.array([rows.size])}))
    merged = merge_states([states[1], states[2], states[0]], names=["b", "c", "a"])
    np.testing.assert_array_equal(merged.arrays["scores.rows.index"], np.arange(n))
    np.testing.assert_array_equal(merged.arrays["scores.rows.margin"], margin)       # exact: rows are not summed
    np.testing.assert_array_equal(merged.arrays["scores.rows.label"], label)
    assert merged.arrays["scores.n"].tolist() == [n]
    back = state_from_bytes(merged.to_bytes(), where="m")       # rows round-trip through the file, empty ones too
    np.testing.assert_array_equal(back.arrays["scores.rows.margin"], margin)
    empty = _state(0, 1, c, **{"rows.index": np.zeros(0, np.int64), "rows.x": np.zeros((0, 3))})
    assert state_from_bytes(empty.to_bytes(), where="e").arrays["rows.x"].shape == (0, 3)


def test_rows_that_cannot_be_one_runs_are_refused():
    from gate.sharding import merge_arrays, rows_group

    assert rows_group("rows.index") == "" and rows_group("a.rows.x") == "a." and rows_group("a.rowsx") is None
    idx = np.array([0, 1], np.int64)
    cases = [
        ([{"a.rows.x": np.zeros(2)}], "without 'a.rows.index'"),
        ([{"a.rows.index": idx, "a.rows.x": np.zeros(3)}], "one row per sample"),
        ([{"a.rows.index": idx, "a.rows.x": np.zeros(2)}, {"a.rows.index": idx + 1, "a.rows.x": np.zeros(2)}],
         "sample 1 is in two shards"),
        ([{"a.rows.index": idx, "a.rows.x": np.zeros((2, 2))}, {"a.rows.index": idx + 2, "a.rows.x": np.zeros((2, 3))}],
         "rows of different shapes"),
        ([{"a.rows.index": idx.astype(np.float64)}], "1-D int64"),
        ([{"a.rows.index": -idx - 1}], "negative"),
        ([{"a.sum": np.zeros(2)}, {"a.sum": np.zeros(3)}], "different shapes"),
    ]
    for parts, message in cases:
        with pytest.raises(DataError, match=message):
            merge_arrays(parts)


def test_measured_values_travel_whole_under_the_hash_and_are_not_merged():
    """A "rank0" check's measured_state() (arrays and JSON facts) comes back from the bytes as it went in, apart from
    the summed arrays; the merge hands shard 0's on; timings in two files, or in another shard's, are refused."""
    counts = PairedCounts(3)
    counts.update(np.array([0, 1]), np.array([0, 1]), np.array([0, 2]))
    timings = {"runs.0.baseline_s": np.array([1e-3, 2e-3]), "runs.0.candidate_first": np.array([0, 1], np.int64),
               "facts": {"runs": [{"stop": "budget", "lost": {"baseline": float("nan")}}], "skip": None}}
    zero = _state(0, 2, counts)
    zero.measured = {"latency": timings}
    back = state_from_bytes(zero.to_bytes(), where="s0")
    assert set(back.arrays) == {"counts.codes", "counts.n"}
    got = back.measured["latency"]
    assert got["runs.0.baseline_s"].tobytes() == timings["runs.0.baseline_s"].tobytes()
    assert got["runs.0.candidate_first"].dtype == np.int64 and got["facts"]["runs"][0]["stop"] == "budget"
    one = state_from_bytes(_state(1, 2, counts).to_bytes(), where="s1")
    assert one.measured == {}
    merged = merge_states([one, back], names=["s1", "s0"])
    assert merged.measured == {"latency": got}
    with pytest.raises(DataError, match="s0 and s1 both carry latency's timings"):
        merge_states([back, _carrying(one)], names=["s0", "s1"])
    with pytest.raises(DataError, match="s1: shard 2/2 carries latency's timings"):
        merge_states([_carrying(one), _state(0, 2, counts)], names=["s1", "s0"])
    # The facts are under the SHA-256: edited in the header alone, the file is refused.
    payload = zero.to_bytes()
    header_len = int.from_bytes(payload[:8], "little")
    header = payload[8:8 + header_len].decode()
    edited = header.replace("budget", "decide")
    assert edited != header and len(edited) == len(header)
    with pytest.raises(DataError, match="SHA-256"):
        state_from_bytes(payload[:8] + edited.encode() + payload[8 + header_len:], where="edited")


def _carrying(state: RunState) -> RunState:
    return RunState(meta=state.meta, arrays=state.arrays, texts=state.texts,
                    measured={"latency": {"facts": {"skip": "x"}}})


def _set(path: str, value):
    """A header edit: `path` (dots, [i] for a list item) set to `value`."""
    def edit(meta):
        *heads, last = path.replace("[", ".").replace("]", "").split(".")
        node = meta
        for head in heads:
            node = node[int(head)] if head.isdigit() else node[head]
        node[int(last) if last.isdigit() else last] = value
    return edit


@pytest.mark.parametrize("edit, said", [
    (_set("shard", ["a", "b"]), "field shard[0]: expected an integer, found str"),
    (_set("shard", [5, 2]), "field shard: expected [index, count] with 0 <= index < count <= 65536, found [5, 2]"),
    (_set("shard", [0, 10**9]), "field shard: expected [index, count] with 0 <= index < count <= 65536, found [0, 1000000000]"),
    (_set("shard", [0]), "field shard: expected [index, count]"),
    (_set("num_samples", -100), "field num_samples: expected an integer >= 0, found -100"),
    (_set("num_classes", True), "field num_classes: expected an integer, found bool"),
    (_set("models", [1, 2]), "field models[0]: expected an object, found int 1"),
    (_set("models[1].sha256", 5), "field models[1].sha256: expected a string, found int 5"),
    (_set("models[0].role", "candidate"), "field models: expected the baseline's then the candidate's"),
    (_set("models[0].extra", 1), "field models[0].extra: unknown field"),
    (_set("environment", {"a": {"b": [1]}}), "field environment.a: expected a string or a number, found dict"),
    (_set("notes", [{"x": 1}]), "field notes[0]: expected a string, found dict"),
    (_set("classes", {"x": 1}), "field classes.x: unknown field"),
    (_set("classes.baseline.generic", "no"), "field classes.baseline.generic: expected true or false"),
    (_set("data.bogus", 1), "field data.bogus: unknown field"),
    (_set("data.batch_size", 0), "field data.batch_size: expected an integer >= 1, found 0"),
    (_set("data.num_samples", 9), "field data.num_samples: 9, but num_samples is"),
    (_set("task", "ranking"), "field task: expected one of classification, multi_label, regression"),
    (_set("checks", ["accuracy", "nope"]), "field checks: nope is no check"),
    (_set("config_digest", "x"), "field config_digest: expected a SHA-256"),
    (_set("config", {"seed": 1}), "field config does not match the state's config_digest"),
    (_set("extra", 1), "field extra: unknown field"),
    (_set("class_names", ["a"]), "field class_names: 1 names for num_classes 3"),
])
def test_every_header_field_is_checked_and_named(edit, said):
    c = PairedCounts(3)
    c.update(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([0, 2, 2]))
    state = _state(0, 1, c)
    edit(state.meta)
    with pytest.raises(DataError) as caught:
        state_from_bytes(state.to_bytes(), where="s.gstate")
    assert str(caught.value).startswith("s.gstate: gate state ") and said in str(caught.value), str(caught.value)


@pytest.mark.parametrize("arrays, said", [
    ({"counts.n": np.array([3.0])}, "must be 1-D int64 arrays of one length"),
    ({"counts.n": np.array([3, 1], np.int64)}, "must be 1-D int64 arrays of one length"),
    ({"counts.n": np.array([-50], np.int64)}, "the smallest -50"),
    ({"counts.n": np.array([2**62], np.int64)}, "cannot count the state's 3 samples"),
])
def test_the_paired_counts_must_count_the_shards_samples(arrays, said):
    c = PairedCounts(3)
    c.update(np.array([0, 0, 0]), np.array([0, 0, 0]), np.array([0, 0, 0]))       # one code, counted 3 times
    state = _state(0, 1, c)
    state.arrays.update(arrays)                 # the SHA-256 is recomputed by to_bytes(), as a forger would
    with pytest.raises(DataError, match="counts") as caught:
        state_from_bytes(state.to_bytes(), where="s")
    assert said in str(caught.value)


def test_a_state_header_nested_too_deeply_is_one_error():
    """200,000 nested brackets in the gate_state header: one DataError naming the file, not a RecursionError."""
    import json

    from safetensors.numpy import save

    payload = save({"counts.n": np.ones(1, dtype=np.int64)}, metadata={"gate_state": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(DataError, match="deep.gstate: not a gate state file: its header is nested too deeply"):
        state_from_bytes(payload, where="deep.gstate")
    assert json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])        # the outer header is fine
