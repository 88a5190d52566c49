"""Which cells a picture was drawn from, written into the PNG itself, so a committed picture can be checked
against the committed results it illustrates.

A PNG the harness writes carries a tEXt chunk `harness-cells`: the comma-separated, sorted ids of the cells
of the results it was drawn from (summary.json's rows' `ids`), whether or not each cell has a mark of its own
(the base is a line on the Pareto plot, a failed cell has no point). matplotlib writes the chunk as it saves
(`savefig(metadata=...)`); a PNG written by something else (the Playwright screenshot) gets it afterwards
(`stamp`), through Pillow where it is installed, else by a chunk inserted before IEND.

    fig.savefig(path, metadata=png_metadata(rows))
    stamp(Path("results/smoke/report.png"), cell_ids(rows))
    read_cells(Path("results/smoke/pareto.png"))   # ["0d7c60e08727", ...]; None without the chunk
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

KEY = "harness-cells"
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cell_ids(rows: list[dict]) -> list[str]:
    """The sorted cell ids of summary rows (each row's `ids`: one per seed)."""
    return sorted({i for r in rows for i in r.get("ids", [])})


def png_metadata(rows: list[dict]) -> dict[str, str]:
    """matplotlib's `savefig(metadata=...)` for a PNG drawn from `rows`."""
    return {KEY: ",".join(cell_ids(rows))}


def _chunks(data: bytes):
    """(type, body, start, end) of each chunk of a PNG's bytes."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        yield kind, data[pos + 8:pos + 8 + length], pos, end
        pos = end


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def text_chunks(path: Path) -> dict[str, str]:
    """The PNG's textual metadata: tEXt, zTXt and uncompressed iTXt chunks, by keyword."""
    out = {}
    for kind, body, _, _ in _chunks(Path(path).read_bytes()):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
    return out


def read_cells(path: Path) -> list[str] | None:
    """The cell ids a harness PNG names; None when it has no `harness-cells` chunk."""
    value = text_chunks(path).get(KEY)
    return None if value is None else [i for i in value.split(",") if i]


def stamp(path: Path, cells: list[str]) -> Path:
    """Write (or replace) the `harness-cells` chunk of an existing PNG."""
    value = ",".join(sorted(cells))
    try:
        from PIL import Image, PngImagePlugin
    except ImportError:
        return _stamp_stdlib(Path(path), value)
    with Image.open(path) as im:
        im.load()
        info = PngImagePlugin.PngInfo()
        for key, text in getattr(im, "text", {}).items():
            if key != KEY:
                info.add_text(key, text)
        info.add_text(KEY, value)
        im.save(path, format="PNG", pnginfo=info)
    return Path(path)


def _stamp_stdlib(path: Path, value: str) -> Path:
    """The chunk inserted before IEND, any earlier `harness-cells` tEXt chunk dropped; the image data untouched."""
    data = path.read_bytes()
    kept, iend = [SIGNATURE], None
    for kind, body, start, end in _chunks(data):
        if kind == b"IEND":
            iend = data[start:end]
        elif not (kind == b"tEXt" and body.partition(b"\0")[0] == KEY.encode("latin-1")):
            kept.append(data[start:end])
    if iend is None:
        raise ValueError(f"{path}: a PNG without IEND")
    path.write_bytes(b"".join([*kept, _chunk(b"tEXt", KEY.encode("latin-1") + b"\0" + value.encode("latin-1")), iend]))
    return path
