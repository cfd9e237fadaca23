"""`python -m safeload`."""

import sys

from safeload._cli import main

sys.exit(main())
