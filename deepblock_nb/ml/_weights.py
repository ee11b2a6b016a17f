"""Pretrained weights: looked up in the torch hub cache, fetched into it when online.

torchvision keeps downloaded weights in the torch hub cache,
``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``. A file there
(or a file the user names) is used. When none is there, ``ensure_weights``
fetches it into that very place (so torchvision's own ``weights.get_state_dict()``
finds it afterwards), with a short connect timeout; offline it says so in one
line and the caller trains from scratch. A failed fetch is remembered for a few
minutes so later builds do not wait on the timeout again.

Environment:
    DEEPBLOCK_DOWNLOAD_WEIGHTS=0   never fetch (only the cache is looked up).
    DEEPBLOCK_WEIGHTS_TIMEOUT      seconds to wait for the server (default 3).
    DEEPBLOCK_WEIGHTS_URL          a URL prefix that replaces everything before
                                   the file name (a mirror, or a test server).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from deepblock_nb.errors import ModelError

__all__ = [
    "download_allowed",
    "ensure_weights",
    "first_weights",
    "forget_failed_downloads",
    "hub_checkpoints_dir",
    "hub_file",
    "load_matching",
    "read_state_dict",
    "warn_no_weights",
]


def hub_checkpoints_dir() -> Path:
    """The folder torchvision reads cached weights from (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_file(weights_enum: Any) -> Path | None:
    """The cached file of a torchvision weights enum member, or None when it is absent."""
    if weights_enum is None:
        return None
    path = hub_checkpoints_dir() / os.path.basename(weights_enum.url)
    return path if path.is_file() else None


def warn_no_weights(what: str, wanted: list[Any], fallback: str) -> None:
    """Warn that none of the ``wanted`` weights enums is cached; ``fallback`` says what happens instead."""
    names = " or ".join(os.path.basename(w.url) for w in wanted)
    warnings.warn(
        f"no pretrained weights for {what} found in {hub_checkpoints_dir()}; {fallback}. "
        f"To use them, place {names} there, or pass weights='path/to/file.pth'.",
        UserWarning,
        stacklevel=4,
    )


@dataclass(frozen=True)
class _Failure:
    name: str  # the weights file name
    reason: str
    offline: bool  # the server could not be reached (rather than: it answered wrongly)


class _FetchError(Exception):
    def __init__(self, reason: str, key: str, offline: bool) -> None:
        super().__init__(reason)
        self.reason, self.key, self.offline = reason, key, offline


_DEFAULT_TIMEOUT_S = 3.0
_FAILURE_TTL_S = 300.0  # a failed fetch blocks retries this long: each retry would cost the timeout
_CHUNK = 1 << 20
_lock = threading.Lock()
_failures: dict[str, tuple[float, _Failure]] = {}  # host or file URL -> (time.monotonic(), failure)


def download_allowed(download: bool | None = None) -> bool:
    """Whether fetching is on: ``download`` when given, else ``$DEEPBLOCK_DOWNLOAD_WEIGHTS`` (on unless 0)."""
    if download is not None:
        return bool(download)
    value = os.environ.get("DEEPBLOCK_DOWNLOAD_WEIGHTS", "").strip().lower()
    return value not in ("0", "false", "no", "off")


def forget_failed_downloads() -> None:
    """Forget the remembered failed fetches, so the next build tries the network again."""
    with _lock:
        _failures.clear()


def ensure_weights(weights_enum: Any, *, download: bool | None = None, progress: bool = True) -> Path | None:
    """The cached file of a torchvision weights enum member, fetched into the hub cache when absent.

    The file lands where ``torch.hub.load_state_dict_from_url`` puts it, after its
    sha256 prefix (in the file name) is checked; a partial file never appears there.

    Args:
        download: False only looks in the cache; None lets ``$DEEPBLOCK_DOWNLOAD_WEIGHTS`` decide.
        progress: show a tqdm progress bar (on stderr) while fetching.

    Returns:
        The file, or None: not cached and fetching off, or the fetch failed (then
        after one warning line; the failure is remembered for a few minutes).
    """
    path, failure = _obtain(weights_enum, download, progress)
    if failure is not None:
        _warn_failed([failure], "training from scratch")
    return path


def first_weights(
    candidates: Sequence[Any],
    *,
    download: bool | None = None,
    progress: bool = True,
    warn: bool = True,
    fallback: str = "training from scratch",
) -> tuple[Any, Path] | None:
    """The first of ``candidates`` (weights enums, most wanted first; None skipped)
    whose file is cached or can be fetched, with that file.

    When none is found and fetching failed, one warning line names the files and
    says ``fallback``; ``warn=False`` keeps quiet (the failure stays remembered).
    """
    failures: list[_Failure] = []
    for weights_enum in candidates:
        if weights_enum is None:
            continue
        path, failure = _obtain(weights_enum, download, progress)
        if path is not None:
            return weights_enum, path
        if failure is not None:
            failures.append(failure)
    if failures and warn:
        _warn_failed(failures, fallback)
    return None


def _obtain(weights_enum: Any, download: bool | None, progress: bool) -> tuple[Path | None, _Failure | None]:
    """(the cached or fetched file, None) or (None, why the fetch failed); (None, None) when fetching is off."""
    cached = hub_file(weights_enum)
    if cached is not None or weights_enum is None or not download_allowed(download):
        return cached, None
    url = _source_url(weights_enum.url)
    name = os.path.basename(urllib.parse.urlsplit(url).path)
    now = time.monotonic()
    with _lock:
        for key in (urllib.parse.urlsplit(url).netloc, url):
            hit = _failures.get(key)
            if hit is not None and now - hit[0] < _FAILURE_TTL_S:
                return None, _Failure(name, hit[1].reason, hit[1].offline)
    dst = hub_checkpoints_dir() / name
    try:
        _download(url, dst, progress)
    except _FetchError as exc:
        failure = _Failure(name, exc.reason, exc.offline)
        with _lock:
            _failures[exc.key] = (time.monotonic(), failure)
        return None, failure
    return dst, None


def _source_url(url: str) -> str:
    """``url``, or the same file name under ``$DEEPBLOCK_WEIGHTS_URL``."""
    base = os.environ.get("DEEPBLOCK_WEIGHTS_URL", "").strip()
    if not base:
        return url
    return base.rstrip("/") + "/" + os.path.basename(urllib.parse.urlsplit(url).path)


def _timeout_s() -> float:
    try:
        value = float(os.environ.get("DEEPBLOCK_WEIGHTS_TIMEOUT", "") or _DEFAULT_TIMEOUT_S)
    except ValueError:
        return _DEFAULT_TIMEOUT_S
    return value if value > 0 else _DEFAULT_TIMEOUT_S


def _network_reason(exc: BaseException) -> str:
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(inner, TimeoutError):
        return f"no answer within {_timeout_s():g} s"
    return str(inner) or type(inner).__name__


def _download(url: str, dst: Path, progress: bool) -> None:
    """Fetch ``url`` into ``dst`` through a temporary file in the same folder.

    Raises:
        _FetchError: keyed by host when the server cannot be reached, else by URL.
    """
    host = urllib.parse.urlsplit(url).netloc
    timeout = _timeout_s()
    # urlopen applies the timeout to the connect and to each read: a dead server costs it once.
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers={"User-Agent": "deepblock_nb"}), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        raise _FetchError(f"HTTP {exc.code} {exc.reason}", url, offline=False) from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, timed out
        raise _FetchError(_network_reason(exc), host, offline=True) from exc
    except ValueError as exc:  # a malformed URL
        raise _FetchError(str(exc), url, offline=False) from exc
    match = torch.hub.HASH_REGEX.search(dst.name)
    expected = match.group(1) if match else ""
    tmp: Path | None = None
    try:
        with response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
            tmp = Path(tmp_name)
            digest = hashlib.sha256()
            size = 0
            bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dst.name, disable=not progress
            )
            with os.fdopen(fd, "wb") as out, bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _FetchError(_network_reason(exc), host, offline=True) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise _FetchError(f"got {size} of {total} bytes", url, offline=False)
        if not digest.hexdigest().startswith(expected):
            raise _FetchError(
                f"sha256 {digest.hexdigest()[: len(expected)]} does not match {expected} in the file name",
                url,
                offline=False,
            )
        os.replace(tmp, dst)
        tmp = None
    except OSError as exc:  # the cache folder is not writable, the disk is full
        raise _FetchError(f"cannot write {dst.parent}: {exc}", url, offline=False) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _warn_failed(failures: list[_Failure], fallback: str) -> None:
    names = " or ".join(dict.fromkeys(f.name for f in failures))
    first = failures[0]
    why = f"offline? {first.reason}" if first.offline else first.reason
    warnings.warn(
        f"deepblock_nb: cannot download {names} into {hub_checkpoints_dir()} ({why}); {fallback}. "
        "Set DEEPBLOCK_DOWNLOAD_WEIGHTS=0 to skip this check.",
        UserWarning,
        stacklevel=3,
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a plain state dict or one of our checkpoints.

    Raises:
        ModelError: the file is missing or holds no tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"weights file {p} cannot be read as torch weights: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        obj = obj["model_state"]
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not state:
        raise ModelError(f"weights file {p} holds no tensors (expected a state dict)")
    return state


# (prefix in the model, prefix in the file): a detector file, then classification
# backbones under torchvision's FPN and IntermediateLayerGetter wrappers.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("backbone.body.", ""),
    ("backbone.body.", "features."),
    ("backbone.", ""),
)


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy every tensor of ``state`` whose name and shape fit ``module``; returns how many.

    Heads sized for another number of classes are skipped, so COCO detector files
    and ImageNet backbone files both load into a detector for our categories.

    Raises:
        ModelError: nothing in ``state`` fits the module.
    """
    own = module.state_dict()
    best: dict[str, torch.Tensor] = {}
    for mine, theirs in _PREFIXES:
        found = {}
        for key, value in state.items():
            if not key.startswith(theirs):
                continue
            target = mine + key[len(theirs) :]
            if target in own and own[target].shape == value.shape:
                found[target] = value
        if len(found) > len(best):
            best = found
    if not best:
        raise ModelError(f"no tensor of {source} fits this model; is it the weights of another architecture?")
    module.load_state_dict(best, strict=False)
    return len(best)
