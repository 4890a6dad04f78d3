"""Reference models that use only the public API of :mod:`materials_ham`.

* ``baselines.h0``: predictions equal to H0 (the zeroth-step Hamiltonian), the floor every
  model must beat: ``python -m baselines.h0 --dataset PATH --split test -o h0.zarr``, then
  ``materials-ham evaluate h0.zarr --dataset PATH``.
* ``baselines.nextham`` (the NextHAM reference model) is planned, not yet implemented.
"""
