"""A model directory from a pull request cannot make the loader read files elsewhere on the machine."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

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
    assert "a symbolic link leads out of its directory" in res.err
    assert "PRIVATE KEY" not in res.err + res.out


@pytest.mark.parametrize("role", ["candidate", "data"])
@pytest.mark.parametrize("spelled", ["relative", "absolute"])
def test_a_file_in_a_committed_directory_link_to_a_secret_is_refused_without_quoting_it(
        role, spelled, world, in_repo_root, tmp_path, capsys, monkeypatch):
    """The checkout commits `models -> ~/.ssh` (or `data -> ...`): the file named through it is not a link
    itself, the directory on its way is. Refused before it is read, so the error does not quote the key."""
    from tests.acceptance.helpers import run_cli

    secrets = tmp_path / "home" / ".ssh"
    secrets.mkdir(parents=True)
    name = "eval.csv" if role == "data" else "model.safetensors"
    (secrets / name).write_text("https://bob:ghp_A1B2C3D4E5F6G7H8@github.com\n", encoding="utf-8")
    checkout = tmp_path / "checkout"
    (checkout / "pr").mkdir(parents=True)
    (checkout / "pr" / "files").symlink_to(secrets)
    monkeypatch.chdir(checkout)                       # a CI job runs in the checkout
    path = Path("pr/files") / name if spelled == "relative" else checkout / "pr" / "files" / name
    candidate, data = (world.good, path) if role == "data" else (path, world.data)
    res = run_cli(capsys, "check", candidate, "--baseline", world.baseline, "--data", data,
                  "--model-factory", "tests.tiny_models:build_mlp")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "a symbolic link leads out of its directory" in res.err
    assert "ghp_" not in res.err + res.out


def test_directory_links_inside_the_checkout_and_above_it_are_followed(world, in_repo_root, tmp_path, capsys,
                                                                       monkeypatch):
    """A link within the checkout (to another of its folders) and a link above the working directory (a mounted
    data disk) are the checkout's and the machine's own: followed."""
    from tests.acceptance.helpers import run_cli

    disk = tmp_path / "disk"
    disk.mkdir()
    shutil.copy(world.data, disk / "eval.npz")
    (tmp_path / "mounted").symlink_to(disk)           # above the working directory
    checkout = tmp_path / "checkout"
    (checkout / "models").mkdir(parents=True)
    shutil.copy(world.good, checkout / "models" / "cand.pt")
    (checkout / "current").symlink_to(checkout / "models")      # inside the checkout, to inside it
    monkeypatch.chdir(checkout)
    res = run_cli(capsys, "check", "current/cand.pt", "--baseline", world.baseline, "--data",
                  tmp_path / "mounted" / "eval.npz", "--model-factory", "tests.tiny_models:build_mlp")
    assert res.code == 0, res.err


def test_a_cases_file_that_links_out_is_refused_without_quoting_it(tmp_path):
    from gate.checks.cases import load_cases
    from gate.errors import ConfigError

    secret = tmp_path / "secret.txt"
    secret.write_text("ghp_SECRETTOKEN123: x\n", encoding="utf-8")
    (tmp_path / "pr").mkdir()
    (tmp_path / "pr" / "cases.yaml").symlink_to(secret)
    with pytest.raises(ConfigError, match="checks.cases.file: .*cases.yaml: a symbolic link leads out") as err:
        load_cases(tmp_path / "pr" / "cases.yaml", where="checks.cases.file")
    assert "ghp_" not in str(err.value)


@pytest.mark.parametrize("role", ["candidate", "data"])
def test_a_link_loop_on_the_way_is_the_readers_own_one_line_error(role, world, in_repo_root, tmp_path, capsys,
                                                                   monkeypatch):
    from tests.acceptance.helpers import run_cli

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "loop").symlink_to("loop")
    monkeypatch.chdir(checkout)
    path = Path("loop") / ("eval.npz" if role == "data" else "model.pt")
    candidate, data = (world.good, path) if role == "data" else (path, world.data)
    res = run_cli(capsys, "check", candidate, "--baseline", world.baseline, "--data", data,
                  "--model-factory", "tests.tiny_models:build_mlp")
    assert res.code == 2 and res.err.count("\n") == 1 and res.err.startswith("error: ")
    assert "internal error" not in res.err and str(path) in res.err
