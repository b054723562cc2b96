"""``python -m alpamayo_ros``: the ``alpamayo`` command line (:mod:`alpamayo_ros.cli`)."""

import sys

from alpamayo_ros.cli import main

sys.exit(main())
