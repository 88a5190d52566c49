"""Where names point: zoo entries shipped in the package, local paths, or hub ids.

    resolve_model("tiny-world")           # .../harness/zoo/tiny-world/model
    resolve_data("zoo:tiny-world/record")  # .../harness/zoo/tiny-world/data/record
"""

from __future__ import annotations

from pathlib import Path

ZOO = Path(__file__).parent / "zoo"
SUITES = Path(__file__).resolve().parent.parent / "suites"  # the shipped matrices (smoke.yaml, ...)


def resolve_model(name: str, base: Path | None = None) -> str:
    """A zoo name or an existing local folder becomes a path; anything else is taken as a hub id."""
    if (ZOO / name / "model").is_dir():
        return str(ZOO / name / "model")
    local = (base or Path.cwd()) / name
    return str(local) if local.exists() else name


def resolve_data(value: str, base: Path | None = None) -> Path:
    """`zoo:NAME[/SUB]` points into the shipped zoo's data; other values are paths relative to `base`."""
    if value.startswith("zoo:"):
        name, _, sub = value[4:].partition("/")
        return ZOO / name / "data" / sub
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path
