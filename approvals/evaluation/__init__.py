"""The evaluation room: figures, threshold sweeps, rule health, labelled exports and what-if replays.

Import from the modules themselves (``approvals.evaluation.figures``, ``.sweep``, ...): this package
re-exports nothing.
"""
