"""Tell a checkpoint's format from its content (magic bytes, zip members, pickle globals), never its extension.

    zip with archive_format / models/*.json ......... torch.export program      -> "export"
    zip with constants.pkl / code/ .................. TorchScript archive       -> "torchscript"
    zip with data.pkl ............................... torch.save                -> "state_dict" or "pickle"
    u64 header length + JSON object ................. safetensors               -> "safetensors"
    pickle opcodes (0x80, protocol 2-5) ............. legacy torch.save/pickle  -> "state_dict" or "pickle"
    directory with config.json ...................... Hugging Face model dir    -> "huggingface"

A torch.save file is "pickle" when it references globals that torch.load(weights_only=True) refuses
(a whole nn.Module, a training dict holding custom objects, or something malicious).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gate.archives import inflation_refusal
from gate.errors import CheckpointError
from gate.files import LINK_OUT, link_escape
from gate.models.base import brief
from gate.models.pickles import PickleScanError, globals_in_pickle_bytes, scan_pickle_stream, unsafe_globals

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Bounds on what the sniffer reads from a file that may come from a pull request: a header or a pickle is
# metadata, a few MB even for large models; anything bigger is refused before it is parsed or inflated.
MAX_SAFETENSORS_HEADER = 16 << 20
MAX_PICKLE_BYTES = 64 << 20
_EXPECTED = ("expected a PyTorch checkpoint (torch.save zip or pickle, TorchScript, torch.export .pt2), "
             "a safetensors file, or a Hugging Face model directory")


@dataclass(frozen=True)
class Sniffed:
    """What the content says about a checkpoint, gathered once and reused by the loader."""

    format: str
    container: str                              # "zip" | "pickle" | "safetensors" | "directory"
    unsafe_globals: tuple[str, ...] = ()         # globals weights_only loading would refuse
    plain_pickle: bool = False                   # a pickle.dump file, not torch.save (torch.load cannot read it)


def sniff_format(path: str | Path) -> str:
    """The checkpoint format of `path`, from its content: one of gate.models.base.FORMATS.

    >>> sniff_format("model.bin")          # a TorchScript archive saved under a misleading name
    'torchscript'
    """
    return sniff(Path(path), where=str(path)).format


def sniff(path: Path, *, where: str) -> Sniffed:
    """Inspect `path` (a file or a directory); CheckpointError naming `where` if it is not a checkpoint."""
    if link_escape(path) is not None:
        raise CheckpointError(f"{where}: {LINK_OUT}")
    if not path.exists():
        raise CheckpointError(f"{where}: file not found")
    if path.is_dir():
        return _sniff_directory(path, where)
    if not path.is_file():                  # reading a FIFO or a device would block or never end
        raise CheckpointError(f"{where}: not a regular file (a pipe, socket or device); {_EXPECTED}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as err:
        raise CheckpointError(f"{where}: cannot read the file: {brief(err)}") from err
    if size == 0:
        raise CheckpointError(f"{where}: the file is empty (0 bytes); {_EXPECTED}")
    if head.startswith(_ZIP_MAGICS):
        return _sniff_zip(path, where, size)
    header_len = _safetensors_header_length(head)
    if header_len is not None:
        if header_len > MAX_SAFETENSORS_HEADER:
            raise CheckpointError(
                f"{where}: a safetensors file whose header declares {header_len} bytes; headers of real models "
                f"are a few MB at most, and more than {MAX_SAFETENSORS_HEADER} bytes are not parsed"
            )
        return _sniff_safetensors(path, where, size, header_len)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _sniff_pickle(path, where)
    raise CheckpointError(f"{where}: not a checkpoint: found {_describe(head)}; {_EXPECTED}")


def _sniff_directory(path: Path, where: str) -> Sniffed:
    if (path / "config.json").is_file():
        return Sniffed("huggingface", "directory")
    entries = sorted(p.name for p in path.iterdir())
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing"
    raise CheckpointError(
        f"{where}: a directory, but not a Hugging Face model directory: expected config.json with model "
        f"weights (model.safetensors or pytorch_model.bin); found: {shown}"
    )


def _sniff_zip(path: Path, where: str, size: int) -> Sniffed:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            members = {_without_top_dir(name): name for name in names}
            if "archive_format" in members or "serialized_exported_program.json" in members or any(
                m.startswith("models/") and m.endswith(".json") for m in members
            ):
                return Sniffed("export", "zip")
            if "constants.pkl" in members or any(m.startswith("code/") for m in members):
                return Sniffed("torchscript", "zip")
            _refuse_zip_bomb(archive, where, size)
            if "data.pkl" in members:
                data = _read_bounded(archive, members["data.pkl"], where)
                # torch.load checks no CRC: a flipped byte in a tensor's member would load as other weights
                bad = archive.testzip()
                if bad is not None:
                    raise CheckpointError(
                        f"{where}: corrupt: the archive's member {bad} does not match its CRC-32 checksum (a "
                        "damaged copy or download); save or download the checkpoint again")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise CheckpointError(
            f"{where}: a truncated or corrupt zip archive ({size} bytes; {brief(err)}); "
            "the file was probably cut short while saving or downloading: save or download it again"
        ) from err
    if "data.pkl" not in members:
        shown = ", ".join(sorted(names)[:6]) or "no members"
        raise CheckpointError(f"{where}: a zip archive, but not a PyTorch checkpoint (members: {shown}); {_EXPECTED}")
    try:
        unsafe = unsafe_globals(globals_in_pickle_bytes(data))
    except PickleScanError as err:
        raise CheckpointError(
            f"{where}: a corrupt torch.save archive: its data.pkl is not a valid pickle ({err})"
        ) from err
    return Sniffed("pickle" if unsafe else "state_dict", "zip", tuple(unsafe))


def _refuse_zip_bomb(archive: zipfile.ZipFile, where: str, size: int) -> None:
    """Members that declare far more bytes than the archive holds are refused before anything is inflated (a torch.save
    zip stores its members: deflate beyond the shared bound is a bomb)."""
    refusal = inflation_refusal(archive, size=size, allowance=MAX_PICKLE_BYTES)
    if refusal is not None:
        raise CheckpointError(f"{where}: {refusal} (a zip bomb, or not a torch.save archive)")


def _read_bounded(archive: zipfile.ZipFile, name: str, where: str) -> bytes:
    """A member's bytes, at most MAX_PICKLE_BYTES of them, whatever its header claims."""
    info = archive.getinfo(name)
    if info.file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{where}: its {name} declares {info.file_size} bytes; a checkpoint's pickle is "
                              f"metadata, and at most {MAX_PICKLE_BYTES} bytes of it are read")
    with archive.open(info) as member:
        data = member.read(MAX_PICKLE_BYTES + 1)
    if len(data) > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{where}: its {name} inflates beyond {MAX_PICKLE_BYTES} bytes; refusing to read it")
    return data


def _without_top_dir(name: str) -> str:
    """torch archives put every member under one folder named after the file: 'model/data.pkl' -> 'data.pkl'."""
    return name.split("/", 1)[1] if "/" in name else name


def _safetensors_header_length(head: bytes) -> int | None:
    """The declared header length when the bytes look like safetensors (u64 little-endian, then '{')."""
    if len(head) < 10 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    return length if 2 <= length < (1 << 40) else None


def _sniff_safetensors(path: Path, where: str, size: int, header_len: int) -> Sniffed:
    if 8 + header_len > size:
        raise CheckpointError(
            f"{where}: a truncated safetensors file: its header declares {header_len} bytes "
            f"but the file has only {size - 8} after the length field"
        )
    with open(path, "rb") as handle:
        handle.seek(8)
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{where}: a corrupt safetensors file: its header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: a corrupt safetensors file: its header is not a JSON object")
    data_end = max((_data_end(info) for key, info in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{where}: a truncated safetensors file: its tensors need {8 + header_len + data_end} bytes "
            f"but the file has {size}"
        )
    return Sniffed("safetensors", "safetensors")


def _data_end(info: object) -> int:
    try:
        return int(info["data_offsets"][1])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return 0


def _sniff_pickle(path: Path, where: str) -> Sniffed:
    try:
        with open(path, "rb") as handle:
            names, is_legacy = scan_pickle_stream(handle)
    except PickleScanError as err:
        raise CheckpointError(f"{where}: a truncated or corrupt pickle ({err})") from err
    unsafe = unsafe_globals(names)
    if not is_legacy:
        return Sniffed("pickle", "pickle", tuple(unsafe), plain_pickle=True)
    return Sniffed("pickle" if unsafe else "state_dict", "pickle", tuple(unsafe))


def _describe(head: bytes) -> str:
    """A short human description of unrecognised bytes: text (maybe JSON/CSV) or a hex dump."""
    text = head.decode("utf-8", errors="replace")[:48]   # the 64-byte cut may split a character at the end
    if "\ufffd" not in text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        first = text.strip().splitlines()[0] if text.strip() else ""
        kind = "JSON" if first[:1] in ("{", "[") else "CSV" if "," in first else None
        return f"text{f' (looks like {kind})' if kind else ''} starting with {first[:40]!r}"
    return "binary data starting with " + head[:8].hex(" ")
