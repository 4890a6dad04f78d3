"""The standardised scorer of Materials-HAM-SOC.

* :mod:`.predictions` -- the predictions format: :func:`write_predictions`, :func:`read_predictions`;
* :mod:`.metrics` -- the metric table (matrix groupings x quantities, band metrics);
* :mod:`.bands` -- k-grids and k-paths, Bloch maps, windows, ghost states, the reference cache;
* :mod:`.evaluator` -- :class:`Evaluator`;
* :mod:`.report` -- Markdown/HTML report and plots.

Definitions of every metric: README.md, section "Scoring".
"""
from .evaluator import Evaluation, Evaluator
from .predictions import FORMAT, FORMAT_VERSION, PredictionsStore, read_predictions, write_predictions

__all__ = ["Evaluator", "Evaluation", "write_predictions", "read_predictions", "PredictionsStore", "FORMAT",
           "FORMAT_VERSION"]
