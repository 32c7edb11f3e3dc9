"""seabed_hmc: hierarchical multi-label classification of seafloor and habitat imagery.

Importing the package first applies the start-up fixes in :mod:`seabed_hmc._compat` (offline hub,
no albumentations update check, the torchvision operator fix), so timm and torchvision import on
CPU-only machines with the pinned stack.
"""

from seabed_hmc import _compat

_compat.apply()

__version__ = "0.1.0"
