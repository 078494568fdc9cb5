"""Data: the study table, dataset loaders and the datasets stored in the workspace."""

from cxrlens.data.chexpert import CheXpertImportConfig, load_chexpert, run_data_import_chexpert
from cxrlens.data.folder import FolderImportConfig, load_folder, run_data_import_folder
from cxrlens.data.images import load_image, probe_image
from cxrlens.data.iu_xray import IUXrayImportConfig, load_iu_xray, run_data_import_iu_xray
from cxrlens.data.labeler import LabelerConfig, label_reports, label_study_table
from cxrlens.data.mimic import MimicImportConfig, load_mimic_cxr, run_data_import_mimic_cxr
from cxrlens.data.nih import NIHImportConfig, load_nih14, run_data_import_nih14
from cxrlens.data.reports import ReportSections, parse_sections
from cxrlens.data.schema import (
    CHEXPERT_LABELS,
    SPLITS,
    STUDY_COLUMNS,
    VIEWS,
    finalize_study_table,
    normalize_view,
    patient_split,
    validate_study_table,
)
from cxrlens.data.store import LoadedDataset, import_dataset, read_side_table, read_studies

__all__ = [
    "CHEXPERT_LABELS",
    "SPLITS",
    "STUDY_COLUMNS",
    "VIEWS",
    "CheXpertImportConfig",
    "FolderImportConfig",
    "IUXrayImportConfig",
    "LabelerConfig",
    "LoadedDataset",
    "MimicImportConfig",
    "NIHImportConfig",
    "ReportSections",
    "finalize_study_table",
    "import_dataset",
    "label_reports",
    "label_study_table",
    "load_chexpert",
    "load_folder",
    "load_image",
    "load_iu_xray",
    "load_mimic_cxr",
    "load_nih14",
    "normalize_view",
    "parse_sections",
    "patient_split",
    "probe_image",
    "read_side_table",
    "read_studies",
    "run_data_import_chexpert",
    "run_data_import_folder",
    "run_data_import_iu_xray",
    "run_data_import_mimic_cxr",
    "run_data_import_nih14",
    "validate_study_table",
]
