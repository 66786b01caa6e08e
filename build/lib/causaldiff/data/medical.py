"""NIfTI (``.nii``, ``.nii.gz``) and DICOM (``.dcm``) slices, through the optional ``medical`` extra.

``pip install causaldiff[medical]`` brings nibabel and pydicom; they are imported only when such a file is read.
A slice is a 2-D image, or a volume with exactly one slice; its raw intensities (e.g. Hounsfield units) come back as
float32 (H, W) and are normalised per image by the folder loader. A generated image of a NIfTI source is written
back as NIfTI with the source's header and affine (:func:`nifti_like`); DICOM sources come back as .npy (a DICOM
file needs new UIDs and a consistent geometry that a slice augmenter should not invent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".nii", ".nii.gz", ".dcm")
NIFTI = (".nii", ".nii.gz")


def is_medical(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in SUFFIXES)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI)


def _library(module: str, path: Path):
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(f"{path}: {'DICOM' if module == 'pydicom' else 'NIfTI'} needs {module}; "
                         "install it with: pip install causaldiff[medical]") from None


def nifti_like(slice_hw: np.ndarray, source: str | Path) -> bytes:
    """A gzipped NIfTI-1 file holding ``slice_hw`` (H', W') float32 with the source slice's header and affine.

    When the slice was resampled (H' x W' from the source's H x W), each in-plane voxel axis of the affine is scaled
    by H / H' (W / W') and the origin moved to the centre of the new first voxel, so world coordinates still match.
    """
    import gzip

    nib = _library("nibabel", Path(source))
    src = nib.load(str(source))
    shape, affine = src.shape, src.affine.copy()
    for axis, (n_src, n_out) in enumerate(zip(shape[:2], slice_hw.shape)):
        f = n_src / n_out
        affine[:3, 3] += affine[:3, axis] * (f - 1) / 2  # centre of the new voxel 0, in old voxel units
        affine[:3, axis] *= f
    data = np.asarray(slice_hw, np.float32).reshape(slice_hw.shape + tuple(shape[2:]))  # keep singleton axes
    header = src.header.copy()
    header.set_data_dtype(np.float32)
    out = nib.Nifti1Image(data, affine, header)
    out.set_qform(affine)
    out.set_sform(affine)
    return gzip.compress(out.to_bytes(), mtime=0)


def load_slice(path: Path) -> np.ndarray:
    """Raw intensities (H, W) float32 of a NIfTI or DICOM slice; ValueError naming the file on any problem."""
    module = "nibabel" if is_nifti(path) else "pydicom"
    lib = _library(module, path)
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
