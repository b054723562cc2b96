"""``python -m alpamayo_ros``: the ``alpamayo`` command line (:mod:`alpamayo_ros.cli`)."""

import sys

from alpamayo_ros.cli import main

if __name__ == "__main__":  # importing the module (e.g. the layering test) runs nothing
    sys.exit(main())
