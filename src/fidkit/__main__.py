import sys

from fidkit.cli import main

sys.exit(main())
