"""``python -m seabed_hmc`` is the ``seabed-hmc`` command."""

import sys

from seabed_hmc.cli import main

sys.exit(main())
