"""Writers of tiny but real image files for the image-loader and dataset-loader tests (PNG, JPEG, DICOM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def gradient(h: int = 12, w: int = 10, hi: int = 255, dtype=np.uint8) -> np.ndarray:
    """(h, w) ramp from 0 to ``hi`` along the flattened index: every value distinct enough to check a mapping."""
    ramp = np.linspace(0, hi, h * w).round().astype(dtype)
    return ramp.reshape(h, w)


def write_png(path: Path, arr: np.ndarray) -> Path:
    """8-bit (uint8) or 16-bit (uint16) grey PNG, or RGB when ``arr`` is (H, W, 3) uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16:
        Image.fromarray(arr, mode=None).save(path, format="PNG")
    else:
        Image.fromarray(arr).save(path, format="PNG")
    return path


def write_jpeg(path: Path, arr: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=quality)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_dicom(
    path: Path,
    stored: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    voi_lut: tuple[int, list[int], int] | None = None,
    modality_lut: tuple[int, list[int], int] | None = None,
    patient_id: str = "PAT001",
    view_position: str = "PA",
) -> Path:
    """A DICOM file written with pydicom (explicit VR little endian, CR image storage).

    Args:
        stored: (H, W) or (frames, H, W) integer stored values, or (H, W, 3) uint8 for RGB; ``None`` → no PixelData.
        voi_lut: ``(first_mapped_value, lut_entries, bits_per_entry)`` → a VOI LUT Sequence with one item.
        modality_lut: the same triple → a Modality LUT Sequence with one item (instead of rescale).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = patient_id
    ds.ViewPosition = view_position
    ds.PhotometricInterpretation = photometric
    if stored is not None:
        colour = photometric == "RGB"
        frames = stored.shape[0] if (stored.ndim == 3 and not colour) else 1
        h, w = stored.shape[-3:-1] if colour else stored.shape[-2:]
        ds.Rows, ds.Columns = int(h), int(w)
        ds.SamplesPerPixel = 3 if colour else 1
        if colour:
            ds.PlanarConfiguration = 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            ds.PixelRepresentation = 0
            ds.PixelData = np.ascontiguousarray(stored, dtype=np.uint8).tobytes()
        else:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
            ds.PixelRepresentation = 1 if signed else 0
            ds.PixelData = np.ascontiguousarray(stored, dtype=np.int16 if signed else np.uint16).tobytes()
        if frames > 1:
            ds.NumberOfFrames = frames
    else:
        ds.Rows, ds.Columns = 8, 8
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept if intercept is not None else 0.0
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if modality_lut is not None:
        first, entries, bits = modality_lut
        item = Dataset()
        item.LUTDescriptor = [len(entries), first, bits]
        item.ModalityLUTType = "US"
        item.add_new(0x00283006, "US", [int(v) for v in entries])
        ds.ModalityLUTSequence = Sequence([item])
    if voi_lut is not None:
        first, entries, bits = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(entries), first, bits]
        item.add_new(0x00283006, "US", [int(v) for v in entries])  # LUT Data, VR US (could be OW)
        ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------------------------------- dataset-shaped trees
def tiny_xray(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
    """(h, w) uint8 image with a bright 'body' block, different per seed."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w), dtype=np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] += 150
    return img


def xrv_csv_head(name: str, n: int) -> pd.DataFrame:
    """The first ``n`` rows of a label CSV that torchxrayvision ships (real column names and values)."""
    from cxrlens.data.iu_xray import xrv_data_dir

    return pd.read_csv(xrv_data_dir() / name, nrows=n, dtype=str, keep_default_na=False)


MIMIC_METADATA_COLUMNS = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough  // ? pneumonia

 COMPARISON:  ___

 FINDINGS:

 {findings}

 IMPRESSION:

 {impression}
"""


def make_mimic_tree(root: Path, reports: Path, *, gz: bool = True) -> dict:
    """A MIMIC-CXR-JPG 2.0.0 folder (metadata/split/chexpert CSVs, files/pXX/…/*.jpg) + a MIMIC-CXR reports folder.

    4 patients, 6 studies, 9 images; patient 10000032 has two studies (PA + lateral each).
    """
    from cxrlens.data.schema import CHEXPERT_LABELS

    studies = [  # subject, study, split, [(dicom, view)], findings, impression, labels
        (
            "10000032",
            "50414267",
            "train",
            [
                ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA"),
                ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL"),
            ],
            "The lungs are clear. No pleural effusion.",
            "No acute cardiopulmonary process.",
            {"No Finding": 1.0},
        ),
        (
            "10000032",
            "53189527",
            "train",
            [("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "AP")],
            "Small left pleural effusion.",
            "Small left effusion.",
            {"Pleural Effusion": 1.0, "Pneumothorax": 0.0},
        ),
        (
            "10000764",
            "57375967",
            "validate",
            [
                ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "AP"),
                ("b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f", "LL"),
            ],
            "Mild cardiomegaly.",
            "Possible early pneumonia.",
            {"Cardiomegaly": 1.0, "Pneumonia": -1.0},
        ),
        (
            "10000898",
            "50771383",
            "test",
            [("f23bf4c7-c5cb38c3-4d2e0a4e-5ee1df3f-2bd7e8e6", "PA")],
            "Endotracheal tube in place.",
            "Support device in standard position.",
            {"Support Devices": 1.0},
        ),
        (
            "10000898",
            "54205396",
            "test",
            [("1f2e5b5d-04e0f3c4-9aab4f9b-aa2e8a2e-1a0c7a5f", "PA")],
            "Right pneumothorax.",
            "Right pneumothorax.",
            {"Pneumothorax": 1.0},
        ),
        (
            "11000011",
            "56699142",
            "train",
            [
                ("a4f0c8e1-ff6e1d4d-39b8b5e2-7b1f4d8e-5c2d9a11", "AP"),
                ("c3d1b7a0-1e2f3a4b-5c6d7e8f-9a0b1c2d-3e4f5a6b", ""),
            ],
            "Low lung volumes.",
            "No acute process.",
            {"No Finding": 1.0},
        ),
    ]
    meta, split, labels = [], [], []
    k = 0
    for subject, study, sp, images, findings, impression, labs in studies:
        for dicom, view in images:
            path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
            write_jpeg(path, tiny_xray(k))
            k += 1
            meta.append(
                [
                    dicom,
                    subject,
                    study,
                    "CHEST (PA AND LAT)",
                    view,
                    "16",
                    "16",
                    "21800506",
                    "213014.531",
                    "CHEST (PA AND LAT)",
                    "postero-anterior",
                    "Erect",
                ]
            )
            split.append([dicom, study, subject, sp])
        labels.append({"subject_id": subject, "study_id": study, **{c: labs.get(c, "") for c in CHEXPERT_LABELS}})
        report = reports / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(MIMIC_REPORT.format(findings=findings, impression=impression))
    suffix = ".gz" if gz else ""
    pd.DataFrame(meta, columns=MIMIC_METADATA_COLUMNS).to_csv(
        root / f"mimic-cxr-2.0.0-metadata.csv{suffix}", index=False
    )
    pd.DataFrame(split, columns=["dicom_id", "study_id", "subject_id", "split"]).to_csv(
        root / f"mimic-cxr-2.0.0-split.csv{suffix}", index=False
    )
    pd.DataFrame(labels, columns=["subject_id", "study_id", *CHEXPERT_LABELS]).to_csv(
        root / f"mimic-cxr-2.0.0-chexpert.csv{suffix}", index=False
    )
    return {"studies": studies, "n_images": k}


def make_chexpert_tree(base: Path, n_train: int = 12, small: bool = True) -> Path:
    """``<base>/CheXpert-v1.0-small/{train,valid}.csv`` + images; train rows are the real first rows of CheXpert's
    train.csv (shipped by torchxrayvision), valid rows reuse them under patient ids 64541+ with 0/1 labels."""
    from cxrlens.data.schema import CHEXPERT_LABELS

    name = "CheXpert-v1.0-small" if small else "CheXpert-v1.0"
    root = base / name
    train = xrv_csv_head("chexpert_train.csv.gz", n_train)
    train["Path"] = train["Path"].str.replace("CheXpert-v1.0-small", name, regex=False)
    valid = train.head(4).copy()
    valid["Path"] = [f"{name}/valid/patient6454{i + 1}/study1/view1_frontal.jpg" for i in range(4)]
    for c in CHEXPERT_LABELS:
        valid[c] = valid[c].replace({"-1.0": "1.0", "": "0.0"})
    root.mkdir(parents=True, exist_ok=True)
    train.to_csv(root / "train.csv", index=False)
    valid.to_csv(root / "valid.csv", index=False)
    for k, rel in enumerate([*train["Path"], *valid["Path"]]):
        write_jpeg(base / rel, tiny_xray(100 + k))
    return root


def make_nih_tree(root: Path, n: int = 10) -> pd.DataFrame:
    """ChestX-ray14 folder: the real first ``n`` rows of Data_Entry_2017_v2020.csv, split lists, Kaggle-style
    ``images_001/images/*.png``. Returns the Data_Entry rows."""
    entries = xrv_csv_head("Data_Entry_2017_v2020.csv.gz", n)
    root.mkdir(parents=True, exist_ok=True)
    entries.to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    patients = sorted(set(entries["Patient ID"]))
    test_patients = set(patients[-1:])
    test = entries.loc[entries["Patient ID"].isin(test_patients), "Image Index"]
    train_val = entries.loc[~entries["Patient ID"].isin(test_patients), "Image Index"]
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    for k, name in enumerate(entries["Image Index"]):
        write_png(root / "images_001" / "images" / name, tiny_xray(200 + k))
    return entries
