"""Where a head sits in its frame: the brain mask of a slice, its centroid's offset from the
image's centre column and its tilt. The realism checks judge samples by them, and a prior can be
told them (`prior_pose_condition`), to be sampled at a centred, upright pose."""
import numpy as np
from scipy import ndimage

# Intensity above which a pixel is tissue: the images are scaled so that the brain's bright end
# is 1, and background (air) stays near 0.
TISSUE_THRESHOLD = 0.1


def largest_filled_component(foreground):
    """(mask, labels, sizes) of a boolean image: its largest connected component with its holes
    filled, the component labels and every label's size (0 for the background's; the mask is
    all False, and sizes the count 0, when there is no foreground)."""
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros_like(foreground, dtype=bool), labels, count
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes))), labels, sizes


def tilt(rows, cols):
    """Signed degrees (-90 .. 90] between the long axis of the points (row, col offsets from
    their centroid) and the image's vertical: 0 for an upright head, longer front to back."""
    var_rows, var_cols = float((rows ** 2).mean()), float((cols ** 2).mean())
    covariance = float((rows * cols).mean())
    # The long axis (d_row, d_col) = (cos t, sin t) maximises the variance along it.
    return float(np.degrees(0.5 * np.arctan2(-2.0 * covariance, var_rows - var_cols)))


def mask_pose(mask):
    """(offset, tilt) of a non-empty [H, W] boolean mask: its centroid's column minus the image's
    centre column (pixels), and the tilt (degrees, `tilt`) of its long axis."""
    rows, cols = np.nonzero(mask)
    return (float(cols.mean() - (mask.shape[1] - 1) / 2.0),
            tilt(rows - rows.mean(), cols - cols.mean()))


def head_pose(images, threshold=TISSUE_THRESHOLD):
    """[N, 2] float32: per image, its brain mask's `mask_pose`; (0, 0) for an image with no
    tissue.

    Args:
        images: [N, H, W] or [N, H, W, 1] images in [0, 1].
    """
    images = np.asarray(images, np.float32)
    images = images[..., 0] if images.ndim == 4 else images
    poses = np.zeros((len(images), 2), np.float32)
    for index, image in enumerate(images):
        mask = largest_filled_component(image > threshold)[0]
        if mask.any():
            poses[index] = mask_pose(mask)
    return poses
