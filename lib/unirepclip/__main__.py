"""``python -m unirepclip``: see :mod:`unirepclip.cli`."""
import sys

from unirepclip.cli import main

if __name__ == "__main__":
    sys.exit(main())
