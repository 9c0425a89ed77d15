"""Unit tests of the scripts' Python modules (scripts/lib) and shell helpers.

    python3 -m unittest discover -s scripts/tests -t scripts

(scripts/test.sh runs exactly this). Importing this package puts scripts/lib on sys.path.
"""

import os
import sys

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)
