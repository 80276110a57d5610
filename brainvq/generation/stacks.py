"""Whole synthetic volumes: a stack of slices drawn from the bottom up, the first by the slice
prior (at slice position 0), each next one by the volume prior given the codes of the slice
below it; decoded slice by slice and written as NIfTI volumes with the spacing the model was
trained at. The layers of a 3D code grid are drawn the same way by one `StackPixelCNN`, each
given every layer below it (`sample_stack_codes_given_below`), and rendered by a `VolumeVQVAE`
(`generate_3d_stacks`, a run with `volume_latent` "3d")."""
from __future__ import annotations

import pathlib
import time
from typing import Any, Callable, Mapping

import keras
import numpy as np
from numpy.typing import ArrayLike

from brainvq import config
from brainvq.data import volumes
from brainvq.generation import generate, sampling
from brainvq.hints import PathLike
from brainvq.models import slice_context
from brainvq.models.stack_prior import layers_below as stack_prior_layers_below
from brainvq.output import figures
from brainvq.progress import progress_bar
from brainvq.runs import run_folder
from brainvq.runs.run_folder import RunError

SLICE_SEED_STRIDE = 7919  # slice k of a stack draws with seed + k * this (mod 2**31)


def stack_length(values: Mapping[str, Any]) -> int:
    """Slices in one stack: the run's slices per volume."""
    return int(values["slices_per_volume"])


def sample_stack_codes(prior: keras.Model, volume_prior: keras.Model, count: int, grid_size: int,
                       length: int, temperature: float = 1.0, top_k: int = 0, seed: int = 0,
                       progress: keras.utils.Progbar | None = None, guidance: float = 1.0,
                       covariates: ArrayLike | None = None, covariate_guidance: float = 1.0
                       ) -> np.ndarray:
    """Code grids of `count` stacks of `length` slices: [count, length, g, g] int32, bottom
    first. Slice 0 comes from `prior` at slice position 0; slice k from `volume_prior` at
    position k given slice k - 1's codes (`guidance` on the slice position, and `covariates`
    (one row [C] or one per stack [count, C]) with `covariate_guidance`, for priors trained
    on covariates, as in `sampling.sample_codes`: every slice of a stack gets its stack's).
    Seeded: the same seed gives the same stacks."""
    top_k = min(int(top_k), prior.num_codes)

    def draw(position: int, codes: np.ndarray, layer_seed: int) -> np.ndarray:
        options = dict(slice_index=np.full(count, position, np.int32), temperature=temperature,
                       top_k=top_k, seed=layer_seed, guidance=guidance, covariates=covariates,
                       covariate_guidance=covariate_guidance)
        if position == 0:
            return sampling.sample_codes(prior, count, grid_size, **options)
        return sampling.sample_codes(volume_prior, count, grid_size,
                                     condition_codes=codes[:, position - 1], **options)

    return _draw_layers(count, length, grid_size, seed, draw, progress)


def sample_stack_codes_given_below(stack_prior: keras.Model, count: int, length: int,
                                   temperature: float = 1.0, top_k: int = 0, seed: int = 0,
                                   progress: keras.utils.Progbar | None = None,
                                   covariates: ArrayLike | None = None,
                                   covariate_guidance: float = 1.0) -> np.ndarray:
    """Code stacks [count, length, g, g] int32 drawn layer by layer from the bottom up by one
    `stack_prior.StackPixelCNN`, each layer at its depth given every layer drawn below it (as
    many as the prior sees), and for a prior trained on them each stack's `covariates` (a row
    [C] or [count, C], as `sample_stack_codes`). Seeded as `sample_stack_codes`: the same seed
    gives the same stacks."""
    grid = stack_prior.grid_size
    top_k = min(int(top_k), stack_prior.num_codes)

    def draw(layer: int, codes: np.ndarray, layer_seed: int) -> np.ndarray:
        below = stack_prior_layers_below(codes, layer, stack_prior.context_layers,
                                         stack_prior.absent_code)
        return sampling.sample_codes(
            stack_prior, count, grid, slice_index=np.full(count, layer, np.int32),
            temperature=temperature, top_k=top_k, seed=layer_seed, condition_codes=below,
            covariates=covariates, covariate_guidance=covariate_guidance)

    return _draw_layers(count, length, grid, seed, draw, progress)


def _draw_layers(count: int, length: int, grid_size: int, seed: int,
                 draw: Callable[[int, np.ndarray, int], np.ndarray],
                 progress: keras.utils.Progbar | None) -> np.ndarray:
    """Code stacks [count, length, g, g] int32 filled from the bottom up: layer k is
    `draw(k, codes so far, seed + k * SLICE_SEED_STRIDE mod 2**31)`."""
    codes = np.zeros((count, length, grid_size, grid_size), np.int32)
    for layer in range(length):
        codes[:, layer] = draw(layer, codes, (seed + layer * SLICE_SEED_STRIDE) % 2 ** 31)
        if progress is not None:
            progress.add(1)
    return codes


def decode_stacks(vqvae: keras.Model, codes: np.ndarray, batch_size: int = 64,
                  refiner: keras.Model | None = None, strength: float = 1.0) -> np.ndarray:
    """[V, S, g, g] code grids -> images [V, S, H, W] in [0, 1]: slice by slice, or with a
    `SliceContextRefiner` (models/slice_context.py) each stack's latents refined along its
    slices first (moved `strength` of the way to the refiner's output)."""
    count, length = codes.shape[:2]
    if refiner is not None:
        return np.concatenate([keras.ops.convert_to_numpy(slice_context.decode_refined(
            refiner, vqvae, codes[number:number + 1], batch_size, strength))
            for number in range(count)])
    flat = codes.reshape((count * length,) + codes.shape[2:])
    images = [keras.ops.convert_to_numpy(vqvae.decode_codes(flat[start:start + batch_size]))
              for start in range(0, len(flat), batch_size)]
    images = np.clip(np.concatenate(images), 0.0, 1.0)[..., 0]
    return images.reshape((count, length) + images.shape[1:])


def encode_volumes(volume_vqvae: keras.Model, stacks: np.ndarray, mirrored: bool = False
                   ) -> np.ndarray:
    """3D code grids [V, s, h, w] int32 of stacks [V, S, H, W] by a `VolumeVQVAE`, one at a
    time (mirrored left-right with `mirrored`)."""
    grids = []
    for stack in stacks:
        stack = np.ascontiguousarray(stack[..., ::-1] if mirrored else stack, np.float32)
        grids.append(keras.ops.convert_to_numpy(volume_vqvae.encode(stack[None, ..., None]))[0])
    return np.stack(grids).astype(np.int32)


def decode_volumes(volume_vqvae: keras.Model, codes: np.ndarray) -> np.ndarray:
    """Stacks [V, S, H, W] in [0, 1] rendered by a `VolumeVQVAE` from its 3D code grids
    [V, s, h, w], one at a time."""
    return np.stack([np.clip(keras.ops.convert_to_numpy(
        volume_vqvae.decode_codes(grid[None]))[0, ..., 0], 0.0, 1.0)
        for grid in np.asarray(codes, np.int32)])


def generate_3d_stacks(values: Mapping[str, Any], output_dir: PathLike, count: int,
                       temperature: float | None = None, top_k: int | None = None,
                       seed: int | None = None, stack_prior: keras.Model | None = None,
                       covariates: ArrayLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray, float]:
    """`count` whole volumes of a `volume_latent` "3d" run: (images [V, S, H, W], 3D code grids
    [V, s, h, w], seconds per volume), each grid drawn layer by layer by its `StackPixelCNN`
    and rendered by its `VolumeVQVAE`. A prior trained on covariates (`volume_condition_on`)
    draws each head with `covariates` ([C] or [V, C], NaN where not given) or, without them,
    as `unconditional_covariates` says: under the no-covariate row ("null"), or with one
    training subject's row each ("drawn")."""
    stack_prior = (run_folder.load_prior(output_dir, "volume") if stack_prior is None
                   else stack_prior)
    seed = values["seed"] if seed is None else seed
    guidance = values.get("covariate_guidance", 1.0)
    if covariates is not None and not getattr(stack_prior, "covariates", []):
        raise RunError(f"the volume prior of {output_dir} draws whole heads as one 3D code "
                       f"and was trained without covariates: sample its volumes without "
                       f"--condition (or train it with --volume-condition-on)")
    if (covariates is None and getattr(stack_prior, "covariates", [])
            and values.get("unconditional_covariates", "null") == "drawn"):
        covariates, guidance = generate.draw_subject_covariates(output_dir, count, seed,
                                                                "volume"), 1.0
    volume_vqvae = run_folder.load_prior(output_dir, "volume_vqvae")
    layers = stack_length(values) // 2 ** volume_vqvae.slice_downsamples
    progress = progress_bar(layers, f"sampling {count} volume(s) of {layers} code layers",
                            minimum=2)
    start = time.perf_counter()
    codes = sample_stack_codes_given_below(
        stack_prior, count, layers,
        temperature=values["temperature"] if temperature is None else temperature,
        top_k=values["top_k"] if top_k is None else top_k, seed=seed, progress=progress,
        covariates=covariates, covariate_guidance=guidance)
    images = decode_volumes(volume_vqvae, codes)
    return images, codes, (time.perf_counter() - start) / count


def _batched(function: Callable, arrays: np.ndarray, batch_size: int) -> np.ndarray:
    """`function` over `arrays` [N, ...] in batches, as one int32 numpy array."""
    return np.concatenate([keras.ops.convert_to_numpy(function(arrays[start:start + batch_size]))
                           for start in range(0, len(arrays), batch_size)]).astype(np.int32)


def encode_slabs(slab_autoencoder: keras.Model, stacks: np.ndarray, batch_size: int = 8
                 ) -> np.ndarray:
    """Slab codes [V, S / f, g, g] of slice-code stacks [V, S, g, g] (V > 0)."""
    return _batched(slab_autoencoder.encode, stacks, batch_size)


def decode_slabs(slab_autoencoder: keras.Model, slab_codes: np.ndarray, batch_size: int = 8
                 ) -> np.ndarray:
    """The most likely slice codes [V, S, g, g] of slab codes [V, S / f, g, g] (V > 0)."""
    return _batched(slab_autoencoder.decode, slab_codes, batch_size)


def generate_stacks(values: Mapping[str, Any], vqvae: keras.Model, output_dir: PathLike,
                    count: int, temperature: float | None = None, top_k: int | None = None,
                    seed: int | None = None, prior: keras.Model | None = None,
                    volume_prior: keras.Model | None = None, covariates: ArrayLike | None = None
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """`count` whole volumes: (images [V, S, H, W], slice codes [V, S, g, g], seconds per
    volume; with `slab_depth` the priors draw slab codes, decoded to slice codes; a run with a
    slice-context refiner decodes each stack through it);
    `covariates` (a row [C], NaN where not requested) applies to every slice of every volume.
    Without them, the volumes of priors trained on covariates are drawn as the run's
    `unconditional_covariates` says: under the no-covariate row ("null"), or each volume with
    one training subject's covariates, unguided ("drawn": a whole head's age and sex). A
    `volume_latent` "3d" run draws them with `generate_3d_stacks` (its codes are 3D grids)."""
    if config.uses_3d_code(values):
        return generate_3d_stacks(values, output_dir, count, temperature, top_k, seed,
                                  volume_prior, covariates)
    prior = run_folder.load_prior(output_dir) if prior is None else prior
    volume_prior = (run_folder.load_prior(output_dir, "volume") if volume_prior is None
                    else volume_prior)
    if covariates is not None and not getattr(volume_prior, "covariates", []):
        raise RunError(f"the volume prior of {output_dir} was trained without covariates: "
                       f"sample its volumes without them (or train it again, `python "
                       f"train.py --stage volume --overwrite --output-dir {output_dir}`)")
    seed = values["seed"] if seed is None else seed
    covariate_guidance = values.get("covariate_guidance", 1.0)
    if (covariates is None and getattr(volume_prior, "covariates", [])
            and values.get("unconditional_covariates", "null") == "drawn"):
        covariates = generate.draw_subject_covariates(output_dir, count, seed, "volume")
        covariate_guidance = 1.0
    refiner = (run_folder.load_prior(output_dir, "context")
               if config.uses_context(values) else None)
    length, slab_autoencoder = stack_length(values), None
    if values.get("slab_depth"):  # the priors draw slab codes: one per slab_depth slices
        slab_autoencoder = run_folder.load_prior(output_dir, "slab")
        length //= values["slab_depth"]
    what = "slabs" if slab_autoencoder is not None else "slices"
    progress = progress_bar(length, f"sampling {count} volume(s) of {length} {what}", minimum=2)
    start = time.perf_counter()
    codes = sample_stack_codes(
        prior, volume_prior, count, vqvae.grid_size, length,
        temperature=values["temperature"] if temperature is None else temperature,
        top_k=values["top_k"] if top_k is None else top_k, seed=seed, progress=progress,
        guidance=values.get("guidance", 1.0), covariates=covariates,
        covariate_guidance=covariate_guidance)
    if slab_autoencoder is not None:
        codes = decode_slabs(slab_autoencoder, codes)
    images = decode_stacks(vqvae, codes, refiner=refiner)
    return images, codes, (time.perf_counter() - start) / count


def write_volumes(stacks: np.ndarray, values: Mapping[str, Any], images_dir: PathLike
                  ) -> tuple[list[pathlib.Path], pathlib.Path]:
    """Writes each stack as `samples/volume_NNN.nii.gz` (RAS, the run's pixel size and slice
    spacing) and the figure of their middle planes `volumes.png`; returns (NIfTI paths,
    figure path)."""
    images_dir = pathlib.Path(images_dir)
    folder = generate.samples_folder(images_dir, "volume_*.nii.gz", what="volumes")
    spacing, field_of_view = values["slice_spacing"], values["field_of_view"]
    paths = [volumes.write_stack(folder / f"volume_{number:03d}.nii.gz", stack, field_of_view,
                                 spacing)
             for number, stack in enumerate(stacks)]
    pixel = field_of_view / stacks.shape[-1]
    figure = figures.plot_volume_planes(
        stacks, images_dir / "volumes.png", pixel, spacing,
        titles=[f"volume {number}" for number in range(len(stacks))],
        title=f"{len(stacks)} synthetic volumes ({stacks.shape[-1]}x{stacks.shape[-2]}x"
              f"{stacks.shape[1]}, {pixel:.2f} x {pixel:.2f} x {spacing:g} mm): middle planes")
    return paths, figure
