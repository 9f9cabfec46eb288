"""`python -m tickserve.cli`: the `tickserve` command."""

import sys

from . import main

sys.exit(main())
