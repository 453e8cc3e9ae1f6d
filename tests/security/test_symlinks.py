"""A model directory from a pull request cannot make the loader read files elsewhere on the machine."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from gate.errors import CheckpointError
from gate.models import load_model
from tests.unit import model_fixtures as fx

CPU = torch.device("cpu")


@pytest.fixture
def hf_dir(tmp_path):
    directory = tmp_path / "pr" / "model"
    fx.build_hf_dir(directory, id2label={0: "negative", 1: "positive"})
    return directory


def test_weights_linked_outside_the_directory_are_refused(hf_dir, tmp_path):
    secret = tmp_path / "elsewhere" / "model.safetensors"
    secret.parent.mkdir()
    shutil.move(hf_dir / "model.safetensors", secret)      # real weights: only the link gives it away
    (hf_dir / "model.safetensors").symlink_to(secret)
    with pytest.raises(CheckpointError, match="model.safetensors is a symbolic link to a file outside"):
        load_model(hf_dir, role="candidate", options={}, device=CPU)


def test_a_shard_index_cannot_point_outside_the_directory(hf_dir, tmp_path):
    outside = tmp_path / "pr" / "stolen.safetensors"
    shutil.move(hf_dir / "model.safetensors", outside)
    (hf_dir / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"bert.embeddings.word_embeddings.weight": "../stolen.safetensors"}}))
    with pytest.raises(CheckpointError, match="weight shards outside the model directory"):
        load_model(hf_dir, role="candidate", options={}, device=CPU)


def test_links_inside_the_directory_and_the_hub_cache_layout_still_load(tmp_path):
    """A Hugging Face cache snapshot links each file to ../../blobs: that is the model's own folder."""
    repo = tmp_path / "models--acme--tiny"
    snapshot = repo / "snapshots" / "0123abc"
    fx.build_hf_dir(snapshot, id2label={0: "negative", 1: "positive"})
    (repo / "blobs").mkdir()
    for file in list(snapshot.iterdir()):
        blob = repo / "blobs" / file.name
        shutil.move(file, blob)
        file.symlink_to(f"../../blobs/{file.name}")
    loaded = load_model(snapshot, role="candidate", options={}, device=CPU)
    assert loaded.format == "huggingface" and loaded.class_names == ("negative", "positive")


@pytest.mark.parametrize("role", ["candidate", "data"])
def test_a_link_to_a_secret_is_refused_without_quoting_it(role, world, in_repo_root, tmp_path, capsys):
    from tests.acceptance.helpers import run_cli

    secret = tmp_path / "home" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----,abc\n", encoding="utf-8")
    pr = tmp_path / "pr"
    pr.mkdir()
    link = pr / ("eval.csv" if role == "data" else "model.pt")
    link.symlink_to(secret)
    candidate, data = (world.good, link) if role == "data" else (link, world.data)
    res = run_cli(capsys, "check", candidate, "--baseline", world.baseline, "--data", data,
                  "--model-factory", "tests.tiny_models:build_mlp")
    assert res.code == 2
    assert "a symbolic link to a file outside its directory" in res.err
    assert "PRIVATE KEY" not in res.err + res.out
