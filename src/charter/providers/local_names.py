"""Which `local:` names can be meant: the embedded model's (a near miss is a typo, found with the config), a folder,
or a Hugging Face Hub id (looked up once before it loads, so that an offline or unknown one fails at once)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from charter.errors import UserError

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
