"""Helpers shared by the tests and the benchmarks (``benchmarks/*.py`` put ``tests/`` on the path).

At initialization a UniRepLKNet's batch norms are identities (running mean 0, variance 1, weight 1,
bias 0), GRN's gamma and beta are zero (GRN is the identity) and the layer scales are 1e-6: a
re-parameterization that dropped any of them would still give the same output. Trained weights are
not like that; ``randomize_reparam_state`` gives every one of them a non-trivial value, so that
fusing them has work to do and a wrong fusion shows.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch import nn

from unirepclip.models.unireplknet import GRNwithNHWC, UniRepLKNetBlock


def randomize_reparam_state(model: nn.Module, seed: Union[int, torch.Generator] = 0, *,
                            scale: float = 0.3, depthwise_std: Optional[float] = None
                            ) -> nn.Module:
    """Give every BatchNorm2d, GRN and layer scale in ``model`` non-trivial values, in place.

    BatchNorm2d: running mean ~ N(0, 0.2), running variance ~ U(0.5, 2), weight ~ U(0.5, 1.5),
    bias ~ N(0, 0.2). GRN gamma and beta, and each block's layer scale: ~ N(0, ``scale``) (keep
    ``scale`` small on deep models, whose activations grow with it). ``depthwise_std``: also draw
    the depthwise kernels from N(0, depthwise_std), so that large kernels carry weight far from
    their centre. ``seed`` is an int or a ``torch.Generator`` (drawn from, so successive calls
    differ). Returns ``model``; its training / eval mode is left as it was.
    """
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, kind: str, a: float, b: float) -> None:
        # draw in float32 on the CPU, then copy: the same values whatever the model's dtype or device
        r = torch.randn(t.shape, generator=g) if kind == "normal" else torch.rand(t.shape, generator=g)
        t.copy_(r * b + a if kind == "normal" else r * (b - a) + a)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                draw(m.running_mean, "normal", 0.0, 0.2)
                draw(m.running_var, "uniform", 0.5, 2.0)
                if m.affine:
                    draw(m.weight, "uniform", 0.5, 1.5)
                    draw(m.bias, "normal", 0.0, 0.2)
            elif isinstance(m, GRNwithNHWC):
                draw(m.gamma, "normal", 0.0, scale)
                if getattr(m, "beta", None) is not None:
                    draw(m.beta, "normal", 0.0, scale)
            elif isinstance(m, UniRepLKNetBlock) and m.gamma is not None:
                draw(m.gamma, "normal", 0.0, scale)
            if depthwise_std is not None and isinstance(m, nn.Conv2d) and m.groups > 1 \
                    and m.groups == m.in_channels:
                draw(m.weight, "normal", 0.0, depthwise_std)
    return model


# --- headless Chromium for the browser tests --------------------------------------------------

CHROMIUM_INSTALL = "apt-get install -y chromium chromium-driver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1024")


def find_executable(names, env: str) -> Optional[str]:
    """``$env``, else the first of ``names`` on the PATH, else ``/usr/bin/<names[0]>``."""
    for candidate in [os.environ.get(env)] + [shutil.which(n) for n in names] + [f"/usr/bin/{names[0]}"]:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@contextlib.contextmanager
def headless_chromium(profile_dir: Path) -> Iterator["object"]:
    """A selenium driver of Debian's headless Chromium with its own profile folder. Where Chromium
    or its driver is missing the test FAILS (never skips) with the install command."""
    import pytest
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = find_executable(["chromium", "chromium-browser"], "CHROMIUM")
    driver = find_executable(["chromedriver"], "CHROMEDRIVER")
    if not chromium or not driver:
        pytest.fail(f"headless Chromium not found (chromium: {chromium}, chromedriver: {driver}); "
                    f"install it as root: {CHROMIUM_INSTALL}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    drv = webdriver.Chrome(options=opts, service=Service(driver))
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def run_ci_notebooks(out: Path, only, **params: str):
    """The ``ci`` profile's run of the notebooks ``only`` (``["01", "03"]``) through the real
    runner into ``out``, with ``-p key=value`` for each of ``params``: ``(exit code, report
    folder, its results.json)``."""
    import json

    from unirepclip.cli import main

    argv = ["run", "--profile", "ci", "--output-dir", str(out), "--no-progress", "-q"]
    argv += [a for nb in only for a in ("--only", nb)]
    argv += [a for k, v in params.items() for a in ("-p", f"{k}={v}")]
    code = main(argv)
    folder = Path(out) / "ci"
    return code, folder, json.loads((folder / "results.json").read_text())
