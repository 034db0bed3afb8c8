import sys

from eossl.cli import main

sys.exit(main())
