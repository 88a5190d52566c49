"""Turn a GGUF file into a plain safetensors model folder that trains and saves like any other.

transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`, with the `gguf` package)
and dequantizes every tensor to float; its config then still carries the GGUF
quantization_config, which blocks saving. So the weights are moved into a model built from
the config without it, and saved with the tokenizer (the GGUF metadata's vocabulary, merges
and chat template) as a normal folder. The result is written to a temporary sibling and
renamed into place, so an interrupted conversion leaves nothing half-written behind.

    convert(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), Path("out/model"))
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch


def tensor_types(gguf_file: Path) -> dict[str, int]:
    """How many tensors the file stores in each GGML type (F32, F16, Q4_1, ...): what the weights went through."""
    from gguf import GGUFReader

    return dict(sorted(Counter(t.tensor_type.name for t in GGUFReader(gguf_file).tensors).items()))


def convert(gguf_file: Path, out: Path, progress=print) -> Path:
    """Dequantize `gguf_file` into `out` (safetensors float32 weights, config, tokenizer); returns `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, out = Path(gguf_file), Path(out)
    progress(f"converting {gguf_file.name}: reading and dequantizing its tensors to float32")
    try:
        tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as e:  # transformers' words for an architecture or file it cannot read
        raise ValueError(f"{gguf_file}: cannot be read as a GGUF causal LM ({str(e).splitlines()[0]})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are float now; a plain config saves and reloads as any model
    config.name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any model folder
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    progress(f"converted {gguf_file.name} -> {out} ({size / 2**20:,.0f} MB)")
    return out


def write_provenance(path: Path, record: dict) -> None:
    """A JSON record of where a converted model came from, written atomically beside it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def cached(gguf_file: Path, progress=print) -> Path:
    """The converted folder of a GGUF file under $HARNESS_HOME/gguf/<hash>: converted on first use only."""
    from filelock import FileLock

    from harness.paths import gguf_dir, sha256

    gguf_file = Path(gguf_file)
    where = gguf_dir(gguf_file)
    if (where / "provenance.json").is_file():
        return where / "model"
    where.mkdir(parents=True, exist_ok=True)
    with FileLock(str(where / ".lock")):  # several cells or processes: one converts, the others wait
        if not (where / "provenance.json").is_file():
            types = tensor_types(gguf_file)
            convert(gguf_file, where / "model", progress)
            write_provenance(where / "provenance.json", {
                "gguf_file": str(gguf_file.resolve()), "gguf_sha256": sha256(gguf_file),
                "gguf_bytes": gguf_file.stat().st_size, "gguf_tensor_types": types,
                "weights": "dequantized to float32 from the tensor types above"})
    return where / "model"
