"""Open-loop evaluation of the policy against baselines: scene geometry, metrics, the run.

Submodules: :mod:`.scene` (true agent boxes from the simulated episodes, plan collisions),
:mod:`.metrics` (pure metric functions), :mod:`.baselines`, :mod:`.evaluate` (the
evaluation over a sample sequence) and :mod:`.commands` (``alpamayo eval``).
"""
