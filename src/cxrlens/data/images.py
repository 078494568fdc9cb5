"""One image loader for chest X-rays: PNG/JPEG (8/16-bit, grey or colour) and DICOM → ``(H, W)`` float32 in [0, 1].

The format is recognised from the file's first bytes, not its name (a ``.png`` that holds a JPEG loads; a text file
named ``.png`` is refused). Every problem is a :class:`~cxrlens.errors.BadInputError` naming the file, so batch jobs
can skip it and go on.

PNG / JPEG (Pillow):

* 8-bit grey (``L``) → ``x / 255``; 16-bit grey (``I;16`` …) → ``x / 65535`` (the container's range, not the
  image's: a 12-bit image stored in 16 bits stays dark; pass ``normalize="minmax"`` to stretch it);
* colour, palette and alpha images → grey with Pillow's ITU-R 601-2 luma (``L = 0.299 R + 0.587 G + 0.114 B``),
  alpha dropped;
* truncated files are refused (Pillow's own check, ``LOAD_TRUNCATED_IMAGES`` is never turned on).

DICOM (pydicom ≥ 3), in the order of the DICOM grey-scale pipeline (PS3.4 N.2):

1. stored values → **modality LUT** (Modality LUT Sequence) or **rescale slope / intercept**;
2. **VOI**: a VOI LUT Sequence if present (output ``0 … 2**bits - 1`` of the LUT descriptor → [0, 1]), else the first
   Window Center / Width with the VOI LUT Function (``LINEAR`` default, ``LINEAR_EXACT``, ``SIGMOID``) computed
   straight into [0, 1], else min–max of the modality values;
3. **MONOCHROME1** (white = low values) inverted: ``1 - x``, so bone is bright in every output;
4. colour DICOM (``RGB``, ``YBR_*``, decoded to RGB by pydicom) → luma as above, no VOI;
5. multi-frame → the first frame, with one warning line.

Refused: no pixel data, photometric interpretations other than MONOCHROME1/2, RGB, YBR_FULL(_422), YBR_RCT/ICT,
undecodable compressed transfer syntaxes (pydicom names the plugin that is missing), a pixel data element shorter
than rows × columns × samples × bits say.

:func:`probe_image` is the cheap check the loaders run on every image (header + end-of-file marker, no decode);
:func:`load_image` decodes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrlens.console import warn_line
from cxrlens.errors import BadInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageInfo",
    "is_image_file",
    "load_image",
    "probe_image",
    "sniff_format",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
_MONO = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
Format = Literal["png", "jpeg", "dicom"]


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe_image` learns without decoding: format, size, frames and (DICOM) a few header fields."""

    path: str
    format: str
    height: int
    width: int
    frames: int = 1
    photometric: str = ""
    patient_id: str = ""
    view_position: str = ""


def is_image_file(path: str | Path) -> bool:
    """True when the name ends in one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _head(path: Path, n: int = 132) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except FileNotFoundError:
        raise BadInputError(path, "image file not found") from None
    except IsADirectoryError:
        raise BadInputError(path, "is a directory, not an image") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot read ({exc.strerror or exc})") from None


def sniff_format(path: str | Path) -> Format:
    """``"png" | "jpeg" | "dicom"`` from the first bytes; :class:`BadInputError` for anything else."""
    path = Path(path)
    head = _head(path)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if not head:
        raise BadInputError(path, "empty file (0 bytes), not an image")
    kind = {".png": "a PNG", ".jpg": "a JPEG", ".jpeg": "a JPEG", ".dcm": "a DICOM", ".dicom": "a DICOM"}.get(
        path.suffix.lower(), "a PNG, JPEG or DICOM"
    )
    return _raise_not_image(path, head, kind)


def _raise_not_image(path: Path, head: bytes, kind: str) -> Format:
    looks_text = all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64])
    what = "looks like text" if looks_text else "unknown signature"
    raise BadInputError(path, f"not {kind} image ({what}: starts with {head[:16]!r})")


# --------------------------------------------------------------------------------------------------- PNG / JPEG
def _tail(path: Path, n: int) -> bytes:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(max(0, size - n))
        return fh.read()


def _check_end_marker(path: Path, fmt: str) -> None:
    """A PNG ends with its IEND chunk and a JPEG with its EOI marker; a cut-off download has neither."""
    if fmt == "png" and b"IEND" not in _tail(path, 64):
        raise BadInputError(path, "truncated PNG (no IEND chunk at the end of the file)")
    if fmt == "jpeg" and b"\xff\xd9" not in _tail(path, 1024):
        raise BadInputError(path, "truncated JPEG (no end-of-image marker FFD9 at the end of the file)")


def _open_pil(path: Path, fmt: str):

    try:
        return Image.open(path, formats=["PNG"] if fmt == "png" else ["JPEG"])
    except UnidentifiedImageError:
        raise BadInputError(path, f"not a readable {fmt.upper()} image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(path, f"corrupt {fmt.upper()} header ({exc})") from None


def _pil_to_gray(img, path: Path, normalize: str) -> np.ndarray:
    """A loaded Pillow image → (H, W) float32 in [0, 1]."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr16 = np.asarray(img, dtype=np.uint16)
        return _minmax(arr16) if normalize == "minmax" else np.divide(arr16, np.float32(65535.0), dtype=np.float32)
    if mode == "L":
        arr8 = np.asarray(img, dtype=np.uint8)
        return _minmax(arr8) if normalize == "minmax" else np.divide(arr8, np.float32(255.0), dtype=np.float32)
    if mode == "I":  # 16-bit PNGs often open as 32-bit ints holding 0 … 65535
        arr = np.asarray(img, dtype=np.int64).astype(np.float32)
        scale = 65535.0
    elif mode == "1":
        arr = np.asarray(img, dtype=np.uint8).astype(np.float32)
        scale = 1.0
    elif mode in ("RGB", "RGBA", "RGBX", "P", "PA", "LA", "CMYK", "YCbCr", "La"):
        arr = np.asarray(img.convert("L"), dtype=np.uint8).astype(np.float32)
        scale = 255.0
    else:
        raise BadInputError(path, f"unsupported image mode {mode!r}")
    return _scale(arr, scale, normalize)


def _scale(arr: np.ndarray, scale: float, normalize: str) -> np.ndarray:
    if normalize == "minmax":
        return _minmax(arr)
    return np.clip(arr / np.float32(scale), 0.0, 1.0).astype(np.float32)


def _minmax(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float32)
    return ((arr - lo) / np.float32(hi - lo)).astype(np.float32)


def _load_pil(path: Path, fmt: str, normalize: str) -> np.ndarray:
    img = _open_pil(path, fmt)
    try:
        with img:
            if getattr(img, "n_frames", 1) > 1:  # APNG / MPO: the first frame, as for DICOM
                warn_line(f"{path}: {img.n_frames} frames, using the first")
            img.load()
            return _pil_to_gray(img, path, normalize)
    except BadInputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise BadInputError(path, f"truncated {fmt.upper()} ({text or 'unexpected end of file'})") from None
        raise BadInputError(path, f"corrupt {fmt.upper()} ({text})") from None


# --------------------------------------------------------------------------------------------------------- DICOM
def _read_dicom(path: Path, *, header_only: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size="4 KB" if header_only else None)
    except InvalidDicomError as exc:
        raise BadInputError(path, f"not a valid DICOM file ({exc})") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise BadInputError(path, f"corrupt DICOM ({type(exc).__name__}: {exc})") from None


def _check_dicom(ds, path: Path) -> tuple[str, int, int, int]:
    """Photometric interpretation, rows, columns, frames; refuses what :func:`load_image` cannot turn grey."""
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            raise BadInputError(path, f"DICOM holds {other[0]}; only integer PixelData is supported")
        raise BadInputError(path, "DICOM has no pixel data (no PixelData element 7FE0,0010)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:
        raise BadInputError(path, "DICOM lacks PhotometricInterpretation (0028,0004)")
    if photometric not in _MONO + _COLOUR:
        raise BadInputError(
            path,
            f"unsupported photometric interpretation {photometric!r} (expected MONOCHROME1, MONOCHROME2, RGB or YBR_*)",
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise BadInputError(path, "DICOM lacks Rows/Columns (0028,0010/0011)") from None
    if rows <= 0 or cols <= 0:
        raise BadInputError(path, f"DICOM has an empty image ({rows} × {cols})")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    return photometric, rows, cols, frames


def _check_pixel_length(ds, path: Path, rows: int, cols: int, frames: int) -> None:
    """Refuse a DICOM whose pixel data runs past the end of the file or is shorter than its header says."""
    try:
        elem = ds.get_item(0x7FE00010, keep_deferred=True)  # header only: do not read the pixels
    except KeyError:
        return
    length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
    if length is None or tell is None or length == 0xFFFFFFFF:  # encapsulated (compressed): undefined length
        return
    size = os.path.getsize(path)
    if tell + length > size:
        raise BadInputError(
            path, f"truncated DICOM (pixel data declares {length} bytes, the file holds {max(size - tell, 0)})"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_encapsulated:
        bits = int(ds.get("BitsAllocated", 16) or 16)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        expected = (rows * cols * frames * samples * bits + 7) // 8
        if length < expected:
            raise BadInputError(
                path, f"pixel data holds {length} bytes, {expected} expected for {frames}×{rows}×{cols}×{bits} bit"
            )


def _window_unit(x: np.ndarray, center: float, width: float, function: str, path: Path) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing straight into [0, 1] (the standard's y_min = 0, y_max = 1)."""
    if function == "SIGMOID":
        if width <= 0:
            raise BadInputError(path, f"Window Width {width} must be > 0 for SIGMOID")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise BadInputError(path, f"Window Width {width} must be > 0 for LINEAR_EXACT")
        c, w = center, width
        return np.clip((x - c) / w + 0.5, 0.0, 1.0).astype(np.float32)
    if function != "LINEAR":
        raise BadInputError(path, f"unsupported VOI LUT Function {function!r}")
    if width < 1:
        raise BadInputError(path, f"Window Width {width} must be >= 1 for LINEAR windowing")
    c, w = center - 0.5, width - 1.0
    if w == 0:  # width 1: a threshold at the centre
        return (x > c).astype(np.float32)
    # x <= c - w/2 → 0, x > c + w/2 → 1, else (x - c)/w + 0.5: the middle line clipped to [0, 1] is the same map
    out = np.array(x, dtype=np.float32, copy=True)
    out -= np.float32(c)
    out /= np.float32(w)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _lut_lookup(x: np.ndarray, ds, sequence: str, path: Path) -> tuple[np.ndarray, int]:
    """Apply the first item of a Modality or VOI LUT Sequence (PS3.3 C.11.1.1 / C.11.2.1.1).

    Input values below the first mapped value take the first entry, above the last the last entry.

    Returns:
        values: float32 LUT outputs, same shape as ``x``; bits: the entry bit depth (third descriptor value).
    """
    what = "Modality LUT Sequence" if sequence == "ModalityLUTSequence" else "VOI LUT Sequence"
    try:
        item = ds[sequence][0]
        n_entries, first_map, bits = (int(v) for v in item.LUTDescriptor)
        n_entries = n_entries or 65536
        if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first_map >= 32768:
            first_map -= 65536  # the descriptor's first value is signed for signed pixel data
        data = item.LUTData
        if isinstance(data, bytes):
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            big = syntax is not None and syntax == "1.2.840.10008.1.2.2"
            lut = np.frombuffer(data, dtype=">u2" if big else "<u2")[:n_entries].astype(np.float32)
        elif isinstance(data, (int, float)):
            lut = np.array([data], dtype=np.float32)
        else:
            lut = np.array(list(data), dtype=np.float32)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise BadInputError(path, f"bad {what} ({exc})") from None
    if lut.ndim != 1 or lut.size == 0 or not 1 <= bits <= 16:
        raise BadInputError(path, f"bad {what} (descriptor {n_entries}, {first_map}, {bits}; {lut.size} entries)")
    idx = np.clip(np.rint(x).astype(np.int64) - first_map, 0, lut.size - 1)
    return lut[idx], bits


def _voi_lut_unit(x: np.ndarray, ds, path: Path) -> np.ndarray:
    """The VOI LUT Sequence's output mapped into [0, 1] by its entry bit depth (0 … 2**bits - 1)."""
    values, bits = _lut_lookup(x, ds, "VOILUTSequence", path)
    return np.clip(values / np.float32(2.0**bits - 1.0), 0.0, 1.0).astype(np.float32)


def _first(value) -> float:
    """First value of a possibly multi-valued DS element."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, (str, bytes))):
        value = value[0]
    return float(value)


def _dicom_to_gray(ds, path: Path, normalize: str) -> np.ndarray:
    photometric, _, _, frames = _check_dicom(ds, path)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:  # no decoder plugin for the transfer syntax
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise BadInputError(path, f"cannot decode pixel data ({name}): {exc}") from None
    except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError) as exc:
        raise BadInputError(path, f"bad pixel data ({type(exc).__name__}: {exc})") from None
    colour = photometric in _COLOUR
    if frames > 1:
        warn_line(f"{path}: multi-frame DICOM ({frames} frames), using the first frame")
        arr = arr[0]
    if colour:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise BadInputError(path, f"{photometric} DICOM decoded to shape {arr.shape}, expected (H, W, 3)")
        rgb = arr.astype(np.float32)
        luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        return _scale(luma, 2.0**bits - 1.0, normalize)
    if arr.ndim != 2:
        raise BadInputError(path, f"grey DICOM decoded to shape {arr.shape}, expected (H, W)")
    try:
        if ds.get("ModalityLUTSequence"):
            values, _ = _lut_lookup(arr, ds, "ModalityLUTSequence", path)
        else:  # rescale slope / intercept (identity when absent), in float32: one pass, exact for 16-bit input
            slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
            intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
            values = arr.astype(np.float32)
            if slope != 1.0:
                values *= np.float32(slope)
            if intercept != 0.0:
                values += np.float32(intercept)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise BadInputError(path, f"bad modality LUT / rescale ({exc})") from None
    if normalize == "minmax":
        out = _minmax(values)
    elif ds.get("VOILUTSequence"):
        out = _voi_lut_unit(values, ds, path)
    elif "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowCenter is not None and ds.WindowWidth is not None:
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        except (TypeError, ValueError, IndexError):
            raise BadInputError(path, "unreadable Window Center / Width") from None
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        out = _window_unit(values, center, width, function, path)
    else:
        out = _minmax(values)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return np.ascontiguousarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------- public
def probe_image(path: str | Path) -> ImageInfo:
    """Cheap validity check without decoding pixels: format by signature, header, size, and for PNG/JPEG the
    end-of-file marker (catches truncated downloads); for DICOM pixel data present and a supported photometric
    interpretation. Raises :class:`BadInputError` naming the file."""
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "dicom":
        ds = _read_dicom(path, header_only=True)
        photometric, rows, cols, frames = _check_dicom(ds, path)
        _check_pixel_length(ds, path, rows, cols, frames)
        return ImageInfo(
            str(path),
            fmt,
            rows,
            cols,
            frames,
            photometric,
            str(ds.get("PatientID", "") or "").strip(),
            str(ds.get("ViewPosition", "") or "").strip(),
        )
    _check_end_marker(path, fmt)
    with _open_pil(path, fmt) as img:
        width, height = img.size
        return ImageInfo(str(path), fmt, height, width, getattr(img, "n_frames", 1), img.mode)


def load_image(path: str | Path, *, normalize: Literal["auto", "minmax"] = "auto") -> np.ndarray:
    """Decode one chest X-ray to grey.

    Args:
        path: a PNG, JPEG or DICOM file (format from its signature).
        normalize: ``"auto"`` — PNG/JPEG divided by their container range (255 or 65535), DICOM through its VOI
            transform (min–max when it has none); ``"minmax"`` — stretch every image to its own min…max.

    Returns:
        image_HW: (H, W) float32 in [0, 1], bright = dense (bone white), whatever the photometric interpretation.

    Raises:
        BadInputError: naming ``path`` — not an image, truncated, no pixel data, unsupported photometric …
    """
    if normalize not in ("auto", "minmax"):
        raise ValueError(f"normalize must be 'auto' or 'minmax', got {normalize!r}")
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "dicom":
        return _dicom_to_gray(_read_dicom(path, header_only=False), path, normalize)
    return _load_pil(path, fmt, normalize)
