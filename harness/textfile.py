"""Read a user's text file strictly: UTF-8 (a BOM allowed), or an error naming the file, line and encoding seen.

Every reader of data, benchmark and safety files goes through `read_text`, so an empty,
whitespace-only, binary, UTF-16 or Latin-1 file is one clear FormatError, never a traceback
from deep inside csv or json.

    text = read_text(Path("data/train.jsonl"))   # FormatError: "data/train.jsonl: encoded as UTF-16 LE ..."
"""

from __future__ import annotations

import codecs
from pathlib import Path

BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"),  # UTF-32 LE starts like UTF-16 LE
        (codecs.BOM_UTF16_LE, "UTF-16 LE"), (codecs.BOM_UTF16_BE, "UTF-16 BE"))
RESAVE = "re-save it as UTF-8"


class FormatError(ValueError):
    """A file does not have the layout or encoding its reader expects; the message names the file (and line)."""


def _guess(raw: bytes) -> str:
    """The encoding charset_normalizer finds most likely, as words for the message."""
    from charset_normalizer import from_bytes

    best = from_bytes(raw[:65536]).best()
    return f"it looks like {best.encoding}" if best else "its encoding is not recognisable"


def decode(raw: bytes, where: str) -> str:
    """`raw` as UTF-8 text; FormatError naming `where`, the line and the encoding seen otherwise."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    for bom, name in BOMS:
        if raw.startswith(bom):
            raise FormatError(f"{where}: encoded as {name} (byte-order mark), not UTF-8; {RESAVE}")
    if b"\x00" in raw:
        head = raw[:4096]
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if max(odd, even) > len(head) // 4 and min(odd, even) == 0:
            order = "LE" if odd else "BE"
            raise FormatError(f"{where}: looks like UTF-16 {order} without a byte-order mark, not UTF-8; {RESAVE}")
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise FormatError(f"{where}:{line}: binary data (a NUL byte), not a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise FormatError(f"{where}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} cannot be decoded); "
                          f"{_guess(raw)}; {RESAVE}") from None


def read_text(path: Path) -> str:
    """The file's text; FormatError when it cannot be read, is not UTF-8 text, or holds nothing but whitespace."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    text = decode(raw, str(path))
    if not text.strip():
        raise FormatError(f"{path}: " + ("empty file (0 bytes)" if not raw else "only whitespace, no content"))
    return text
