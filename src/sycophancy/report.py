"""`python -m sycophancy.report DIR`: the results table and plots of a folder of runs."""

import sys

from sycophancy.reporting.report import main

if __name__ == "__main__":
    sys.exit(main())
