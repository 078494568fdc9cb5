"""The image loader: PNG/JPEG 8/16-bit and RGB, DICOM grey-scale pipeline (modality LUT, VOI LUT / window,
MONOCHROME1, multi-frame), and every bad-input case as one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrlens.data.images import load_image, probe_image, sniff_format
from cxrlens.errors import BadInputError
from tests.data.fake_cxr_files import gradient, truncate, write_dicom, write_jpeg, write_png


# ------------------------------------------------------------------------------------------------- PNG / JPEG
def test_png_8bit_exact(tmp_path: Path) -> None:
    arr = gradient(12, 10, 255, np.uint8)
    img = load_image(write_png(tmp_path / "a.png", arr))
    assert img.dtype == np.float32 and img.shape == (12, 10)
    np.testing.assert_array_equal(img, arr.astype(np.float32) / 255)
    assert img.min() == 0.0 and img.max() == 1.0


def test_png_16bit_uses_container_range_and_minmax_stretches(tmp_path: Path) -> None:
    arr = gradient(8, 8, 4095, np.uint16)  # 12-bit data in a 16-bit PNG
    path = write_png(tmp_path / "a16.png", arr)
    img = load_image(path)
    np.testing.assert_allclose(img, arr / 65535.0, rtol=0, atol=1e-7)
    assert img.max() < 0.07  # container range: stays dark
    stretched = load_image(path, normalize="minmax")
    np.testing.assert_allclose(stretched, arr / 4095.0, atol=1e-6)
    assert probe_image(path).height == 8 and probe_image(path).format == "png"


def test_rgb_png_to_luma_and_jpeg_close_to_source(tmp_path: Path) -> None:
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 255  # pure red → luma 0.299
    rgb[3:, :, :] = 255  # white rows → 1
    img = load_image(write_png(tmp_path / "rgb.png", rgb))
    assert abs(img[0, 0] - 0.299) < 2 / 255 and img[5, 5] == 1.0
    src = np.kron(gradient(8, 8, 255, np.uint8), np.ones((8, 8), np.uint8))  # smooth blocks, JPEG-friendly
    jpg = load_image(write_jpeg(tmp_path / "a.jpg", src, quality=95))
    assert jpg.shape == (64, 64)
    assert np.abs(jpg - src / 255.0).mean() < 0.02


def test_format_from_signature_not_name(tmp_path: Path) -> None:
    src = gradient(16, 16, 255, np.uint8)
    path = write_jpeg(tmp_path / "actually_jpeg.png", src)
    assert sniff_format(path) == "jpeg"
    assert load_image(path).shape == (16, 16)


# ------------------------------------------------------------------------------------------------------- DICOM
def test_dicom_monochrome2_minmax_and_monochrome1_inverted(tmp_path: Path) -> None:
    stored = gradient(6, 7, 4095, np.uint16)
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", stored))
    np.testing.assert_allclose(m2, stored / 4095.0, atol=1e-6)  # no VOI: min–max of the modality values
    m1 = load_image(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    info = probe_image(tmp_path / "m1.dcm")
    assert (info.format, info.height, info.width, info.photometric) == ("dicom", 6, 7, "MONOCHROME1")
    assert info.patient_id == "PAT001" and info.view_position == "PA"


def test_dicom_rescale_slope_is_applied(tmp_path: Path) -> None:
    stored = gradient(5, 5, 1000, np.uint16)
    plain = load_image(write_dicom(tmp_path / "p.dcm", stored))
    negative = load_image(write_dicom(tmp_path / "n.dcm", stored, slope=-1.0, intercept=0.0))
    np.testing.assert_allclose(negative, 1.0 - plain, atol=1e-6)  # a negative slope reverses the order


def test_dicom_rescale_then_linear_window(tmp_path: Path) -> None:
    stored = np.array([[0, 100, 200, 300, 400, 500, 600, 700]], dtype=np.uint16)
    slope, intercept, center, width = 2.0, -1000.0, 0.0, 801.0
    img = load_image(write_dicom(tmp_path / "w.dcm", stored, slope=slope, intercept=intercept, window=(center, width)))
    # DICOM PS3.3 C.11.2.1.2.1 by hand: x = stored*slope + intercept; c' = c - 0.5, w' = w - 1
    x = stored.astype(np.float64) * slope + intercept
    c, w = center - 0.5, width - 1.0
    expected = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert img[0, 0] == 0.0 and img[0, -1] == 1.0 and 0.0 < img[0, 4] < 1.0


def test_dicom_window_matches_pydicom_reference(tmp_path: Path) -> None:
    """Peer check: pydicom's own apply_windowing, rescaled from its output range, gives the same numbers."""
    from pydicom import dcmread
    from pydicom.pixels import apply_modality_lut, apply_windowing

    stored = gradient(9, 9, 4095, np.uint16)
    path = write_dicom(tmp_path / "ref.dcm", stored, slope=1.0, intercept=-1024.0, window=(40.0, 1500.0))
    ds = dcmread(path)
    ref = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = 0 * 1.0 - 1024.0, 4095 * 1.0 - 1024.0  # pydicom's output range: stored range through the rescale
    np.testing.assert_allclose(load_image(path), (ref - y_min) / (y_max - y_min), atol=1e-6)


def test_dicom_sigmoid_window(tmp_path: Path) -> None:
    stored = np.array([[0, 500, 1000, 1500, 2000]], dtype=np.uint16)
    img = load_image(write_dicom(tmp_path / "s.dcm", stored, window=(1000.0, 400.0), voi_function="SIGMOID"))
    expected = 1.0 / (1.0 + np.exp(-4.0 * (stored - 1000.0) / 400.0))
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert abs(img[0, 2] - 0.5) < 1e-6


def test_dicom_voi_lut_sequence(tmp_path: Path) -> None:
    first, entries = 100, [255 - i for i in range(256)]  # 8-bit reversed LUT starting at stored value 100
    stored = np.array([[0, 100, 101, 227, 355, 356, 4000]], dtype=np.uint16)
    img = load_image(write_dicom(tmp_path / "lut.dcm", stored, voi_lut=(first, entries, 8), window=(50.0, 10.0)))
    idx = np.clip(stored.astype(int) - first, 0, 255)
    np.testing.assert_allclose(img, np.array(entries)[idx] / 255.0, atol=1e-6)  # the LUT wins over the window
    assert img[0, 0] == 1.0 and img[0, -1] == 0.0


def test_dicom_modality_lut_sequence(tmp_path: Path) -> None:
    entries = [4095 - 16 * i for i in range(256)]  # 256-entry LUT, reversed, starting at stored value 0
    stored = np.array([[0, 10, 100, 255, 300]], dtype=np.uint16)
    img = load_image(write_dicom(tmp_path / "mlut.dcm", stored, modality_lut=(0, entries, 12)))
    modality = np.array(entries, dtype=np.float64)[np.clip(stored.astype(int), 0, 255)]
    np.testing.assert_allclose(img, (modality - modality.min()) / (modality.max() - modality.min()), atol=1e-6)
    assert img[0, 0] == 1.0 and img[0, -1] == 0.0  # the LUT reversed the order


def test_dicom_signed_pixels(tmp_path: Path) -> None:
    stored = np.array([[-2048, -1000, 0, 1000, 2047]], dtype=np.int16)
    img = load_image(write_dicom(tmp_path / "signed.dcm", stored, signed=True))
    np.testing.assert_allclose(img, (stored + 2048) / 4095.0, atol=1e-6)


def test_dicom_multiframe_first_frame_with_warning(tmp_path: Path, capsys) -> None:
    frames = np.stack([gradient(4, 4, 4095, np.uint16), np.full((4, 4), 7, np.uint16), gradient(4, 4, 10, np.uint16)])
    path = write_dicom(tmp_path / "mf.dcm", frames)
    img = load_image(path)
    np.testing.assert_allclose(img, frames[0] / 4095.0, atol=1e-6)
    err = capsys.readouterr().err
    assert "multi-frame DICOM (3 frames), using the first frame" in err and str(path) in err
    assert probe_image(path).frames == 3


def test_dicom_rgb_to_luma(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 255  # pure green → 0.587
    img = load_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    np.testing.assert_allclose(img, 0.587, atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad inputs
def _bad_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    big = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    text_png = tmp_path / "notes.png"
    text_png.write_text("this is a radiology report, not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    not_dicom = tmp_path / "random.dcm"
    not_dicom.write_bytes(b"\x00" * 200)
    garbage_png = tmp_path / "garbage.png"
    garbage_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 + b"IEND")
    return {
        "truncated png": (truncate(write_png(tmp_path / "cut.png", big)), "truncated PNG"),
        "truncated jpeg": (truncate(write_jpeg(tmp_path / "cut.jpg", big)), "truncated JPEG"),
        "text named png": (text_png, "not a PNG image (looks like text"),
        "empty file": (empty, "empty file"),
        "dicom without pixels": (write_dicom(tmp_path / "nopix.dcm", None), "DICOM has no pixel data"),
        "palette dicom": (
            write_dicom(tmp_path / "pal.dcm", gradient(4, 4, 255, np.uint16), photometric="PALETTE COLOR"),
            "unsupported photometric interpretation 'PALETTE COLOR'",
        ),
        "odd photometric": (
            write_dicom(tmp_path / "hsv.dcm", gradient(4, 4, 255, np.uint16), photometric="HSV"),
            "unsupported photometric interpretation 'HSV'",
        ),
        "zeros named dcm": (not_dicom, "not a DICOM image"),
        "corrupt png body": (garbage_png, "PNG"),
        "missing": (tmp_path / "absent.png", "image file not found"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated png",
        "truncated jpeg",
        "text named png",
        "empty file",
        "dicom without pixels",
        "palette dicom",
        "odd photometric",
        "zeros named dcm",
        "corrupt png body",
        "missing",
    ],
)
def test_bad_image_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    path, problem = _bad_cases(tmp_path)[case]
    for fn in (load_image, probe_image):
        with pytest.raises(BadInputError) as info:
            fn(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and problem in msg, msg
        assert "\n" not in msg and info.value.path == str(path)


def test_truncated_dicom_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "short.dcm", gradient(32, 32, 4095, np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])  # cut into the pixel data
    for fn in (load_image, probe_image):
        with pytest.raises(BadInputError) as info:
            fn(path)
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert "truncated DICOM" in str(info.value)
