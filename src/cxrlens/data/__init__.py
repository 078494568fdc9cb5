"""Data: the study table, dataset loaders and the datasets stored in the workspace."""

from cxrlens.data.iu_xray import IUXrayImportConfig, import_iu_xray, load_iu_xray
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
    "IUXrayImportConfig",
    "LoadedDataset",
    "finalize_study_table",
    "import_dataset",
    "import_iu_xray",
    "load_iu_xray",
    "normalize_view",
    "patient_split",
    "read_side_table",
    "read_studies",
    "validate_study_table",
]
