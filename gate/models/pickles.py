"""Static inspection of pickles: which Python globals a checkpoint would import, without unpickling it.

The security boundary is torch.load(weights_only=True), which refuses every global outside torch's allowlist.
This module runs first so a refusal can name what the file would have run (e.g. `posix.system`,
`__main__.Net`) and so sniff_format can tell a plain state_dict from a pickled object. Nothing here executes
pickle opcodes: pickletools only decodes them.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickletools
from typing import BinaryIO, Iterable

# torch.save's legacy (non-zip) format starts with this number, pickled on its own.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5     # magic, protocol, sys info, the object, storage keys; raw tensor bytes follow

_STRING_OPS = frozenset({
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_NON_PUSHING_OPS = frozenset({"PROTO", "FRAME", "STOP", "MEMOIZE", "MARK", "POP", "POP_MARK"}) | _PUT_OPS
DYNAMIC_GLOBAL = "<a global whose name is computed while unpickling>"


class PickleScanError(ValueError):
    """The bytes are not a well-formed pickle (truncated or corrupt)."""


def globals_in_pickle(stream: BinaryIO) -> list[str]:
    """The `module.name` globals one pickle (up to its STOP opcode) would import, in order of appearance.

    Handles every protocol: GLOBAL/INST carry the name; STACK_GLOBAL (protocol 4+) takes the two strings
    pushed before it, tracked through the memo. A name that cannot be resolved statically is reported as
    DYNAMIC_GLOBAL, which callers treat as unsafe.
    """
    found: list[str] = []
    pushed: list[object] = []          # approximate stack: strings where known, None for any other value
    memo: dict[int, object] = {}
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                found.append(_python3_name(*str(arg).partition(" ")[::2]))
                pushed.append(None)
            elif name == "STACK_GLOBAL":
                module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
                ok = isinstance(module, str) and isinstance(attr, str)
                found.append(f"{module}.{attr}" if ok else DYNAMIC_GLOBAL)
                pushed.append(None)
            elif name in _STRING_OPS:
                pushed.append(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))
            elif name in _GET_OPS:
                pushed.append(memo.get(arg))
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in _PUT_OPS:
                memo[arg] = pushed[-1] if pushed else None
            elif name not in _NON_PUSHING_OPS:
                pushed.append(None)
    except (ValueError, EOFError, IndexError, UnicodeDecodeError) as err:
        raise PickleScanError(str(err) or type(err).__name__) from err
    return found


def _python3_name(module: str, attr: str) -> str:
    """Protocol 0-2 pickles may use Python 2 names (__builtin__.set); unpickling maps them, and so do we."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def globals_in_pickle_bytes(data: bytes) -> list[str]:
    return globals_in_pickle(io.BytesIO(data))


def scan_pickle_stream(stream: BinaryIO) -> tuple[list[str], bool]:
    """(globals, is_torch_legacy) for a raw pickle file: a plain pickle.dump, or torch.save's legacy format.

    The legacy format is a sequence of pickles followed by raw tensor bytes; the first pickle must be
    well-formed, later ones are scanned until the raw bytes begin.
    """
    start = stream.tell()
    first = globals_in_pickle(stream)
    is_legacy = not first and _first_pickle_is_torch_magic(stream, start)
    found = list(first)
    if is_legacy:
        for _ in range(_LEGACY_PICKLES - 1):
            try:
                found += globals_in_pickle(stream)
            except PickleScanError as err:
                if not stream.read(1):      # the file ends inside its pickles: cut short, not raw bytes
                    raise PickleScanError(f"the file ends inside its pickled header ({err})") from err
                break
    return found, is_legacy


def _first_pickle_is_torch_magic(stream: BinaryIO, start: int) -> bool:
    end = stream.tell()
    stream.seek(start)
    values = [arg for opcode, arg, _ in pickletools.genops(io.BytesIO(stream.read(end - start)))
              if opcode.name not in ("PROTO", "FRAME", "STOP")]
    stream.seek(end)
    return values == [TORCH_LEGACY_MAGIC]


def weights_only_allowlist() -> frozenset[str] | None:
    """The globals torch.load(weights_only=True) accepts (its defaults + add_safe_globals); None if unknown."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals, _get_user_allowed_globals
    except ImportError:
        return None
    return frozenset(_get_allowed_globals()) | frozenset(_get_user_allowed_globals())


def register_torchao_safe_globals() -> bool:
    """Import torchao (the `quant` extra) so that its tensor subclasses join torch's weights_only allowlist.

    Quiet: torchao logs the CUDA kernels it cannot load on a CPU machine. False when torchao is not installed."""
    import contextlib
    import importlib.util
    import logging
    import os
    import sys
    import warnings

    if "torchao" in sys.modules:
        return True
    if importlib.util.find_spec("torchao") is None:
        return False
    logging.disable(logging.WARNING)      # torchao and torch's pytree log what this CPU lacks while importing
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            warnings.simplefilter("ignore")
            import torchao  # noqa: F401 - registers its safe globals
    finally:
        logging.disable(logging.NOTSET)
    return True


_FALLBACK_TORCH_NAMES = ("Size", "device", "float32", "float16", "bfloat16", "float64", "int64", "int32",
                         "int16", "int8", "uint8", "bool", "complex64", "complex128")


def unsafe_globals(names: Iterable[str]) -> list[str]:
    """The names torch's weights_only unpickler would refuse, sorted and de-duplicated.

    torchao's quantized tensor types (Int8Tensor, its granularity and mapping enums) are allowed when torchao is
    installed: torchao itself registers exactly those classes with torch.serialization.add_safe_globals on
    import, so a torchao-quantized state_dict loads as data. Nothing else from torchao, or anywhere, is allowed.
    """
    names = list(names)
    if any(name.startswith("torchao.") for name in names):
        register_torchao_safe_globals()
    allowed = weights_only_allowlist()
    unsafe = set()
    for name in names:
        if allowed is not None:
            if name not in allowed:
                unsafe.add(name)
        elif not _fallback_is_safe(name):
            unsafe.add(name)
    return sorted(unsafe)


def _fallback_is_safe(name: str) -> bool:
    """Conservative stand-in for torch's allowlist, used only if its private helper moves."""
    module, _, attr = name.rpartition(".")
    if name == "collections.OrderedDict":
        return True
    if module == "torch._utils" and attr.startswith("_rebuild_"):
        return True
    return module == "torch" and (attr.endswith("Storage") or attr in _FALLBACK_TORCH_NAMES)


def refusal_message(where: str, names: list[str], *, role: str | None = None) -> str:
    """Why an unsafe pickle is not loaded, and what to do instead. One line (the CLI prints one line)."""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    found = f" (it references {shown})" if shown else ""
    return (
        f"{where}: refusing to load: the file is a pickle that contains Python objects or code, "
        f"not just tensors{found}. Unpickling it could run arbitrary code from the checkpoint, for example "
        f"code added in a pull request. {SAFE_FORMATS}; for a training checkpoint, save only its weights, "
        f"e.g. torch.save(ckpt['state_dict'], path). {trust_hint(role)}"
    )


#: What to ship instead of a program or a pickle: the formats gate reads as data.
SAFE_FORMATS = (
    "Save the model in a safe format instead: safetensors or a state_dict (torch.save(model.state_dict(), path)), "
    "loaded with --model-factory package.module:callable, or a Hugging Face directory with safetensors weights"
)


def trust_hint(role: str | None) -> str:
    """How a user who built the file themselves lets it load: on the command line, never in gate.yaml."""
    flag = f"--trust-checkpoint {role}" if role else "--trust-checkpoint baseline|candidate|all"
    return (f"Only for a file you built yourself (never a pull request's), pass {flag} on the command line "
            "to load it anyway")


def program_refusal(where: str, fmt: str, *, role: str | None = None) -> str:
    """Why a TorchScript archive or a torch.export program is not loaded by default: they are programs."""
    how = {
        "torchscript": "a TorchScript archive is a program, not weights: torch.jit.load runs its code "
                       "(__setstate__ methods, which can create or overwrite files)",
        "export": "a torch.export program (.pt2) is a program, not weights: torch.export.load unpickles parts of "
                  "the archive and may load compiled code from it",
    }[fmt]
    return f"{where}: refusing to load: {how}. {SAFE_FORMATS}. {trust_hint(role)}"
