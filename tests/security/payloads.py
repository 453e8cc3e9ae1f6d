"""Malicious checkpoints, one builder per vector. Each payload, if it ever ran, would create its marker file.

The tests in this folder show two things per vector: the payload is live (torch itself runs it when it loads the
file, in a separate process), and the gate never does (exit 2, the marker absent).
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Tuple

import torch
from torch import nn


class MarkerPayload:
    """Unpickling this calls open(marker, 'w'): the smallest proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(marker: Path, *, protocol: int = 2) -> bytes:
    return pickle.dumps(MarkerPayload(marker), protocol=protocol)


class SetStateWritesFile(nn.Module):
    """A TorchScript submodule whose __setstate__ creates a file when torch.jit.load restores it."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.path = marker
        self.mapped = torch.zeros(8, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        # aten::from_file with shared=True maps the file read-write: it creates (or overwrites) any file.
        self.mapped = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.inner(x))


def torchscript_setstate(path: Path, marker: Path) -> Path:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|save)` is deprecated",
                                category=DeprecationWarning)
        torch.jit.save(torch.jit.script(Wrapper(SetStateWritesFile(str(marker)))), str(path))
    return path


def _exported(path: Path) -> Path:
    model = nn.Sequential(nn.Linear(6, 3))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.randn(4, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def _rewrite_zip(path: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> Path:
    """Rewrite an archive with some members replaced (matched by the end of their names) or added."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        top = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            name = info.filename
            data = next((blob for suffix, blob in replace.items() if name.endswith(suffix)), None)
            dst.writestr(info, src.read(name) if data is None else data)
        for name, blob in (add or {}).items():
            dst.writestr(f"{top}/{name}", blob)
    shutil.move(tmp, path)
    return path


def _torch_saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def export_sample_inputs(path: Path, marker: Path) -> Path:
    """torch.export archive whose pickled sample inputs carry the payload."""
    _exported(path)
    return _rewrite_zip(path, {"data/sample_inputs/model.pt": malicious_pickle(marker)})


def export_use_pickle_weights(path: Path, marker: Path) -> Path:
    """torch.export archive whose weights config marks a weight as pickled, and that weight is the payload."""
    _exported(path)
    with zipfile.ZipFile(path) as src:
        name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(src.read(name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    return _rewrite_zip(path, {"model_weights_config.json": json.dumps(config).encode(),
                               f"data/weights/{first['path_name']}": malicious_pickle(marker)})


def export_opaque_constant(path: Path, marker: Path) -> Path:
    """torch.export archive with a pickled custom-object constant (the payload) listed in its constants config."""
    _exported(path)
    constants = {"config": {"evil": {"path_name": "constant_0", "is_param": False, "use_pickle": True,
                                        "tensor_meta": None}}}
    return _rewrite_zip(path, {"model_constants_config.json": json.dumps(constants).encode()},
                        add={"data/constants/constant_0": malicious_pickle(marker)})


def export_legacy_layout(path: Path, marker: Path) -> Path:
    """The pre-2.6 torch.export layout: serialized_exported_program.json beside pickled state and inputs."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("serialized_exported_program.json", b"{}")
        archive.writestr("serialized_state_dict.pt", malicious_pickle(marker))
        archive.writestr("serialized_constants.pt", malicious_pickle(marker))
        archive.writestr("serialized_example_inputs.pt", malicious_pickle(marker))
        archive.writestr("version", b"1")
    return path


def export_aoti_shared_object(path: Path, marker: Path) -> Path:
    """An AOTInductor package: a .pt2 carrying a compiled .so that loading would dlopen."""
    _exported(path)
    return _rewrite_zip(path, {}, add={"data/aotinductor/model/model.so": b"\x7fELF" + malicious_pickle(marker)})


def whole_module_pickle(path: Path, marker: Path) -> Path:
    """A torch.save of a payload object where the weights should be (the classic vector)."""
    path.write_bytes(_torch_saved({"state_dict": {}, "evil": MarkerPayload(marker)}))
    return path


VECTORS = {
    "torchscript __setstate__ from_file": torchscript_setstate,
    "export pickled sample inputs": export_sample_inputs,
    "export use_pickle weights": export_use_pickle_weights,
    "export opaque constants": export_opaque_constant,
    "export legacy layout": export_legacy_layout,
    "export AOTInductor .so": export_aoti_shared_object,
    "pickle in a training dict": whole_module_pickle,
}

#: How torch itself loads each kind of file (run in a separate process, to show the payload is live).
TORCH_LOADERS = {
    "torchscript": "torch.jit.load(path)",
    "export": "torch.export.load(path)",
    "pickle": "torch.load(path, weights_only=False)",
}
