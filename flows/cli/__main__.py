"""``python -m flows.cli`` is ``vgnn``."""

import sys

from . import console

sys.exit(console())
