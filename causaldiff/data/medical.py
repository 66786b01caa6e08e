"""NIfTI (``.nii``, ``.nii.gz``) and DICOM (``.dcm``) slices, through the optional ``medical`` extra.

``pip install causaldiff[medical]`` brings nibabel and pydicom; they are imported only when such a file is read.
A slice is a 2-D image, or a volume with exactly one slice; its raw intensities (e.g. Hounsfield units) come back as
float32 (H, W) and are normalised per image by the folder loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".nii", ".nii.gz", ".dcm")


def is_medical(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in SUFFIXES)


def load_slice(path: Path) -> np.ndarray:
    """Raw intensities (H, W) float32 of a NIfTI or DICOM slice; ValueError naming the file on any problem."""
    name = path.name.lower()
    module = "pydicom" if name.endswith(".dcm") else "nibabel"
    try:
        lib = __import__(module)
    except ImportError:
        raise ValueError(f"{path}: reading {'DICOM' if module == 'pydicom' else 'NIfTI'} needs {module}; "
                         "install it with: pip install causaldiff[medical]") from None
    try:
        if module == "pydicom":
            ds = lib.dcmread(path)
            # stored values → modality units (e.g. CT Hounsfield): v * RescaleSlope + RescaleIntercept
            arr = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
            arr = arr + float(getattr(ds, "RescaleIntercept", 0) or 0)
        else:
            arr = np.asarray(lib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as e:  # each library raises its own error types for a damaged file
        raise ValueError(f"unreadable {module} file {path}: {e}") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected one 2-D slice, got an array of shape {arr.shape}; export slices first")
    return arr
