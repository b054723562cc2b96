"""A source checkout's virtualenv: the ``alpamayo`` launcher and the ``activate`` hook.

``make setup`` runs ``python -m alpamayo_ros.devenv <venv>``, which writes

- ``<venv>/bin/alpamayo``: the command line of *this checkout* (``alpamayo_ros.cli``),
  run with the environment of the Makefile's ``RUN_ENV`` (the checkout first on
  ``PYTHONPATH``, the venv prefix first on ``AMENT_PREFIX_PATH`` and ``CMAKE_PREFIX_PATH``)
  so the processes it starts (``alpamayo up``, the demo) run the same code;
- a block at the end of ``<venv>/bin/activate`` (bash/zsh) that exports the same
  variables, and restores them on ``deactivate``: after ``source .venv/bin/activate``,
  ``alpamayo``, ``python -m alpamayo_ros`` and ``python -m alpamayo_ros.nodes.<node>``
  run this checkout's code from any directory.

Why not ``pip install -e .``: the message build installs a Python package of the same
name (``alpamayo_ros`` with ``msg/`` and an empty ``__init__``, plus an ``egg-info``) into
the venv; pip treats it as the installed distribution and uninstalls it, deleting the
generated messages, and setuptools' editable finder comes after that package on the
import path anyway. Both files are rewritten on every run (idempotent).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
BEGIN = "# >>> alpamayo_ros checkout environment >>>"
END = "# <<< alpamayo_ros checkout environment <<<"

_LAUNCHER = '''#!{python}
"""alpamayo: this checkout's command line (written by make setup, alpamayo_ros/devenv.py)."""
import os
import sys

CHECKOUT = {checkout!r}
VENV = {venv!r}


def _first(name, value):
    rest = [p for p in os.environ.get(name, "").split(os.pathsep) if p and p != value]
    os.environ[name] = os.pathsep.join([value] + rest)


if not os.path.isfile(os.path.join(CHECKOUT, "alpamayo_ros", "cli.py")):
    sys.exit(f"alpamayo: this launcher runs the checkout {{CHECKOUT}}, which is gone; "
             "run make setup in the checkout you use")
_first("PYTHONPATH", CHECKOUT)
_first("AMENT_PREFIX_PATH", VENV)
_first("CMAKE_PREFIX_PATH", VENV)
sys.path.insert(0, CHECKOUT)
# The guard: multiprocessing's spawned workers (alpamayo dataset build --workers N)
# import this file again as __mp_main__ and must not run the command a second time.
if __name__ == "__main__":
    from alpamayo_ros.cli import main

    sys.exit(main())
'''

_HOOK = '''{begin}
# Written by make setup (alpamayo_ros/devenv.py): this checkout's code and the venv's
# ament prefix, as the Makefile's RUN_ENV sets them; deactivate restores them.
if [ -n "${{_ALPAMAYO_ACTIVE-}}" ] && type _alpamayo_restore >/dev/null 2>&1; then
    _alpamayo_restore  # activated again in the same shell: undo the previous block first
fi
_ALPAMAYO_ACTIVE=1
_ALPAMAYO_OLD_PYTHONPATH="${{PYTHONPATH-}}"
_ALPAMAYO_OLD_AMENT_PREFIX_PATH="${{AMENT_PREFIX_PATH-}}"
_ALPAMAYO_OLD_CMAKE_PREFIX_PATH="${{CMAKE_PREFIX_PATH-}}"
export PYTHONPATH="{checkout}${{PYTHONPATH:+:$PYTHONPATH}}"
export AMENT_PREFIX_PATH="{venv}${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}"
export CMAKE_PREFIX_PATH="{venv}${{CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}}"
_alpamayo_restore() {{
    for _alpamayo_var in PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH; do
        eval "_alpamayo_old=\\"\\${{_ALPAMAYO_OLD_$_alpamayo_var-}}\\""
        if [ -n "$_alpamayo_old" ]; then
            eval "export $_alpamayo_var=\\"\\$_alpamayo_old\\""
        else
            unset "$_alpamayo_var"
        fi
        unset "_ALPAMAYO_OLD_$_alpamayo_var"
    done
    unset _alpamayo_var _alpamayo_old _ALPAMAYO_ACTIVE
}}
eval "$(declare -f deactivate | sed '1s/^deactivate/_alpamayo_venv_deactivate/')"
deactivate() {{
    _alpamayo_restore
    _alpamayo_venv_deactivate "$@"
    if [ "${{1:-}}" != "nondestructive" ]; then
        unset -f _alpamayo_restore _alpamayo_venv_deactivate deactivate 2>/dev/null
    fi
}}
{end}
'''


def launcher_text(venv: Path, checkout: Path = CHECKOUT) -> str:
    """The ``<venv>/bin/alpamayo`` script for ``checkout``."""
    return _LAUNCHER.format(python=venv / "bin" / "python", checkout=str(checkout),
                            venv=str(venv))


def hook_text(venv: Path, checkout: Path = CHECKOUT) -> str:
    """The block appended to ``<venv>/bin/activate``."""
    for path in (venv, checkout):
        if any(c in str(path) for c in "\"'$`\\\n"):
            raise ValueError(f"cannot write an activate hook for the path {str(path)!r}: "
                             "it holds a quote, $, backquote, backslash or newline")
    return _HOOK.format(begin=BEGIN, end=END, checkout=checkout, venv=venv)


def strip_hook(text: str) -> str:
    """``text`` without a previously written hook block."""
    start = text.find(BEGIN)
    if start < 0:
        return text
    stop = text.find(END, start)
    if stop < 0:
        raise ValueError(f"the activate script has {BEGIN!r} without {END!r}: "
                         "recreate the venv (make distclean setup)")
    return text[:start] + text[stop + len(END):].lstrip("\n")


def install(venv: Path, checkout: Path = CHECKOUT) -> list[Path]:
    """Write the launcher and the activate hook into ``venv``; return the paths written."""
    venv = Path(venv).absolute()
    bin_dir = venv / "bin"
    activate = bin_dir / "activate"
    if not activate.is_file():
        raise FileNotFoundError(f"{activate} does not exist: {venv} is not a virtualenv")
    launcher = bin_dir / "alpamayo"
    launcher.write_text(launcher_text(venv, checkout))
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    text = strip_hook(activate.read_text())
    activate.write_text(text.rstrip("\n") + "\n\n" + hook_text(venv, checkout))
    return [launcher, activate]


def main(argv: list[str] | None = None) -> int:
    """``python -m alpamayo_ros.devenv VENV``."""
    parser = argparse.ArgumentParser(prog="python -m alpamayo_ros.devenv",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path, help="the virtualenv of this checkout (.venv)")
    args = parser.parse_args(argv)
    try:
        written = install(args.venv)
    except (OSError, ValueError) as exc:
        print(f"devenv: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(os.fspath(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
