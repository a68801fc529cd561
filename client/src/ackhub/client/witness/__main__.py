"""`python -m witness serve|check|keygen`: the same as `ackhub witness …`."""

import sys

from ackhub.client.witness.cli import main

sys.exit(main())
