"""Look at a file without unpickling it: what kind of file is it, and which Python objects does it name?

Everything here reads bytes or walks pickle opcodes with :mod:`pickletools`; nothing is imported or
executed, so it is safe on hostile files. It exists to turn a refusal into a message that says what
was found.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_HEAD_BYTES = 512


def _is_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(b >= 9 for b in head[:200] if b not in (0x1B,))


def _text_kind(head: bytes) -> str:
    text = head.decode("utf-8", errors="replace").lstrip()
    if text.startswith("{"):
        return "a JSON text file"
    if text.startswith("["):
        return "a JSON/TOML/INI text file"
    if text.startswith(("import ", "from ", "def ", "class ", "#!")):
        return "a Python source file"
    if ":" in text.split("\n", 1)[0] or text.startswith(("---", "#")):
        return "a YAML/text file"
    return "a text file"


#: magic-byte test -> description, checked in order
_SIGNATURES: list[tuple[Callable[[bytes], bool], str]] = [
    (lambda h: h.startswith(b"\x93NUMPY"), "a NumPy .npy array"),
    (lambda h: h.startswith(b"\x89HDF\r\n\x1a\n"), "an HDF5 file (e.g. a Keras model)"),
    (lambda h: h.startswith(b"\x1f\x8b"), "a gzip archive"),
    (lambda h: h.startswith(b"\x89PNG"), "a PNG image"),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "a JPEG image"),
    (lambda h: h.startswith(b"\x7fELF"), "an executable"),
    (lambda h: len(h) > 262 and h[257:262] == b"ustar", "a tar archive"),
    (lambda h: len(h) > 9 and h[8:9] == b"{" and b'"dtype"' in h[:_HEAD_BYTES], "a safetensors file"),
]


@dataclass
class PickleScan:
    """What a pickle stream refers to, gathered without running it."""

    globals: list[str] = field(default_factory=list)
    strings: set[str] = field(default_factory=set)
    complete: bool = True


def describe(path: Path) -> str:
    """A short phrase for what the file looks like ("an empty file", "a zip archive without ...")."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        return f"an unreadable file ({exc.strerror or exc})"
    if size == 0:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except Exception:  # zipfile raises many types on damaged archives (even NotImplementedError)
            return f"a truncated or damaged zip archive ({size} bytes)"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return f"a PyTorch zip checkpoint ({size} bytes)"
        return f"a zip archive that is not a PyTorch checkpoint ({len(names)} entries)"
    if head[:1] == b"\x80":
        return f"a pickle stream / legacy PyTorch file ({size} bytes)"
    for test, what in _SIGNATURES:
        if test(head):
            return what
    if _is_text(head):
        return _text_kind(head)
    return f"{size} bytes of unrecognised binary data"


def looks_like_torch_file(path: Path) -> bool:
    """Zip checkpoints (even damaged ones) and legacy pickle streams; not text, images, empty files."""
    return describe(path).startswith(
        ("a PyTorch zip checkpoint", "a pickle stream", "a truncated or damaged zip archive")
    )


def weights_only_globals() -> set[str]:
    """The ``module.name`` globals torch's weights-only unpickler accepts by default."""
    try:
        import torch._weights_only_unpickler as unpickler

        return {str(name) for name in unpickler._get_allowed_globals()}
    except (ImportError, AttributeError):
        return {"collections.OrderedDict"}


def unsafe_globals(scan: PickleScan) -> list[str]:
    """The names in the pickle that the weights-only loader would refuse to import."""
    allowed = weights_only_globals()
    return sorted({g for g in scan.globals if g not in allowed and not g.startswith("torch._utils.")})


def _pickle_streams(path: Path) -> Iterator[bytes]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".pkl"):
                    yield zf.read(name)
    else:
        yield path.read_bytes()


def scan_pickle(path: Path, *, limit_ops: int = 2_000_000) -> PickleScan:
    """Collect the global names (module.qualname) and short strings a pickle refers to."""
    scan = PickleScan()
    try:
        for data in _pickle_streams(path):
            _scan_stream(data, scan, limit_ops)
    except Exception:  # diagnostics only: a damaged archive just gives a less detailed message
        scan.complete = False
    return scan


def _scan_stream(data: bytes, scan: PickleScan, limit_ops: int) -> None:
    stream = io.BytesIO(data)
    # a legacy torch file is several pickles back to back: keep reading until the bytes stop parsing
    while stream.tell() < len(data):
        memo: dict[int, object] = {}
        recent: list[object] = []
        try:
            for count, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
                if count > limit_ops:
                    scan.complete = False
                    return
                name = op.name
                if isinstance(arg, str) and name in (
                    "SHORT_BINUNICODE",
                    "BINUNICODE",
                    "UNICODE",
                    "BINUNICODE8",
                ):
                    recent.append(arg)
                    if len(arg) <= 200:
                        scan.strings.add(arg)
                elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                    scan.globals.append(arg.replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    module, qualname = (recent[-2:] + [None, None])[:2] if len(recent) >= 2 else (None, None)
                    scan.globals.append(f"{module}.{qualname}")
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                    memo[arg] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                    recent.append(memo.get(arg))
                else:
                    recent.append(None)
                del recent[:-4]
        except Exception:  # pickletools reports damaged streams with many exception types
            scan.complete = False
            return
        if stream.tell() >= len(data):
            return
        # legacy files append raw storage bytes after the pickles; stop at the first byte that is not a pickle
        if data[stream.tell() : stream.tell() + 1] != b"\x80":
            return
