"""The reference implementations our metrics are calibrated against, called on uint8 fixtures."""
from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import numpy as np

from eval.calibration.fixtures import Fixture


def _crop(images: np.ndarray, border: int) -> np.ndarray:
    return images[:, border:-border, border:-border] if border else images


def _colour(img: np.ndarray, colour_space: str) -> np.ndarray:
    from skimage.color import rgb2ycbcr, rgb2yuv

    if colour_space == "rgb":
        return img
    if colour_space == "y":
        return rgb2ycbcr(img)[..., 0]  # 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0,1]
    if colour_space == "y_rounded":  # as MATLAB rgb2ycbcr returns it for uint8 input
        return np.round(rgb2ycbcr(img)[..., 0])
    if colour_space == "y_full":
        return rgb2yuv(img)[..., 0] * 255  # 0.299 R + 0.587 G + 0.114 B
    raise ValueError(colour_space)


def skimage_psnr(fx: Fixture, colour_space: str = "rgb", crop_border: int = 0) -> list[float]:
    from skimage.metrics import peak_signal_noise_ratio

    return [
        float(peak_signal_noise_ratio(_colour(t, colour_space), _colour(p, colour_space), data_range=255))
        for p, t in zip(_crop(fx.pred, crop_border), _crop(fx.target, crop_border))
    ]


def skimage_ssim(fx: Fixture, colour_space: str = "rgb", crop_border: int = 0) -> list[float]:
    from skimage.metrics import structural_similarity

    out = []
    for p, t in zip(_crop(fx.pred, crop_border), _crop(fx.target, crop_border)):
        p, t = _colour(p, colour_space), _colour(t, colour_space)
        out.append(float(structural_similarity(
            t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
            channel_axis=-1 if p.ndim == 3 else None)))
    return out


def pytorch_msssim(fx: Fixture, win_size: int = 11) -> list[float]:
    import torch
    from pytorch_msssim import ms_ssim

    def conv(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).double()

    vals = ms_ssim(conv(fx.pred), conv(fx.target), data_range=255, size_average=False,
                   win_size=win_size, win_sigma=1.5)
    return [float(v) for v in vals]


REFERENCE_PACKAGES = {"skimage": "scikit-image", "pytorch_msssim": "pytorch-msssim", "lpips": "lpips",
                      "pytorch_fid": "pytorch-fid"}


def package_version(key: str) -> str:
    return version(REFERENCE_PACKAGES[key])


@contextmanager
def offline_torch_hub(files: dict[str, Path]) -> Iterator[Path]:
    """A temporary torch hub directory holding links to exactly `files` (name -> path), with
    downloads made impossible: the reference packages then load their weights the standard way
    (torchvision / pytorch-fid reading the hub cache) and can never fetch anything."""
    import torch.hub

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
        torch.hub, "download_url_to_file", side_effect=RuntimeError("a reference tried to download weights")
    ):
        checkpoints = Path(tmp) / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        for name, path in files.items():
            (checkpoints / name).symlink_to(Path(path).resolve())
        saved = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = tmp
        try:
            if Path(torch.hub.get_dir()) != Path(tmp) / "hub":
                raise RuntimeError("torch.hub.set_dir() pins the hub directory; cannot isolate the reference")
            yield checkpoints
        finally:
            if saved is None:
                del os.environ["TORCH_HOME"]
            else:
                os.environ["TORCH_HOME"] = saved


def lpips_package(fx: Fixture, net: str, trunk_file: str, trunk_path: Path) -> list[float]:
    """lpips.LPIPS(net=net, version='0.1') as its README uses it, inputs scaled to [-1,1]."""
    import lpips
    import torch

    with offline_torch_hub({trunk_file: trunk_path}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", verbose=False).eval()
    pred, target = fx.tensors()
    with torch.no_grad():
        return [float(v) for v in model(pred * 2 - 1, target * 2 - 1).flatten()]


def pytorch_fid_paths(fx: Fixture, weights_file: str, weights_path: Path, batch_size: int = 32) -> list[float]:
    """pytorch_fid.fid_score.calculate_fid_given_paths on the fixture written as PNG folders."""
    from PIL import Image
    from pytorch_fid.fid_score import calculate_fid_given_paths

    with tempfile.TemporaryDirectory() as tmp, offline_torch_hub({weights_file: weights_path}):
        dirs = [Path(tmp) / "pred", Path(tmp) / "target"]
        for folder, images in zip(dirs, (fx.pred, fx.target)):
            folder.mkdir()
            for i, img in enumerate(images):
                Image.fromarray(img).save(folder / f"{i:04d}.png")
        return [float(calculate_fid_given_paths([str(d) for d in dirs], batch_size, "cpu", 2048, num_workers=0))]
