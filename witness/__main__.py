"""`python -m witness serve|check|keygen`: the same as `ackhub witness …`."""

import sys

from witness.cli import main

sys.exit(main())
