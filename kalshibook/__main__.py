import sys

from kalshibook.cli import main

sys.exit(main())
