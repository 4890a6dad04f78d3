"""Reference models that use only the public API of :mod:`materials_ham`.

Planned here (not yet implemented in this release): ``baselines.h0`` (predictions = H0,
the floor every model must beat) and ``baselines.nextham`` (the NextHAM reference model).
Until then the H0 baseline number is computed by ``materials-ham demo`` via
:func:`materials_ham.gauge.gauge_errors`.
"""
