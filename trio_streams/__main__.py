"""``python -m trio_streams``: the same as the ``trio-streams`` command."""

import sys

from ._cli import main

sys.exit(main())
