"""`python -m safeload` (e.g. `python -m safeload demo`)."""

import sys

from safeload._cli import main

sys.exit(main())
