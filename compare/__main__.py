"""`python -m compare` is the `backprop-parity` command."""

import sys

from compare.cli import main

sys.exit(main())
