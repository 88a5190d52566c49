"""Where names point: zoo entries (shipped in the package or fetched into the cache), local paths, or hub ids.

Fetched zoo models and converted GGUF files live outside the repository, under
`HARNESS_HOME` (default: the user's cache directory, `~/.cache/harness`).

    resolve_model("tiny-world")           # .../harness/zoo/tiny-world/model
    resolve_model("smollm2-135m-instruct")  # $HARNESS_HOME/zoo/smollm2-135m-instruct/model
    resolve_data("zoo:tiny-world/record")  # .../harness/zoo/tiny-world/data/record
    resolve_data("dataset:mmlu")           # $HARNESS_DATA/mmlu (harness/datasets.py catalogues what is there)
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cache
from pathlib import Path

ZOO = Path(__file__).parent / "zoo"
MATRICES = Path(__file__).resolve().parent.parent / "matrices"  # the shipped matrices (smoke.yaml, ...)
GGUF = ".gguf"
DATA_ENV = "HARNESS_DATA"  # the folder holding the real datasets (harness/datasets.py)
ZOO_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # zoo names are plain (a hub id has a slash, a path may too)


def home() -> Path:
    """The harness's cache folder: HARNESS_HOME, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    if os.environ.get("HARNESS_HOME"):
        return Path(os.environ["HARNESS_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "harness"


def data_root() -> Path:
    """The real datasets' folder (`dataset:` references): HARNESS_DATA, else ../shared/data beside the checkout."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return MATRICES.parent.parent / "shared" / "data"


def fetched_dir(name: str) -> Path:
    """Where a fetched zoo model lives: `model/` (loadable folder) and `provenance.json` beside it."""
    return home() / "zoo" / name


def sha256(path: Path) -> str:
    """The file's sha256, computed once per process for an unchanged file (size and mtime as the key)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_dir(path: Path) -> Path:
    """The converted folder of a GGUF file, keyed by its content hash (a renamed copy is not converted again)."""
    return home() / "gguf" / sha256(path)[:16]


def resolve_model(name: str, base: Path | None = None) -> str:
    """A zoo name, a fetched zoo model or a local folder becomes a path; anything else is taken as a hub id.

    A local `.gguf` file becomes its converted folder once converted (harness.models converts it);
    until then the file's own path, which only `harness.models.load` reads.
    """
    if (ZOO / name / "model").is_dir():
        return str(ZOO / name / "model")
    if ZOO_NAME.match(name) and (fetched_dir(name) / "model").is_dir():
        return str(fetched_dir(name) / "model")
    local = (base or Path.cwd()) / name
    if local.is_file() and local.suffix == GGUF and (gguf_dir(local) / "model").is_dir():
        return str(gguf_dir(local) / "model")
    return str(local) if local.exists() else name


def resolve_data(value: str, base: Path | None = None) -> Path:
    """`zoo:NAME[/SUB]` points into the shipped zoo's data, `dataset:NAME[/SUB]` into the data folder (data_root;
    `dataset:.` is the folder itself); other values are paths relative to `base`."""
    if value.startswith("zoo:"):
        name, _, sub = value[4:].partition("/")
        return ZOO / name / "data" / sub
    if value.startswith("dataset:"):
        return data_root() / os.path.normpath(value[8:] or ".")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path
