"""Weakly supervised resonant anomaly detection: CATHODE and the methods it is compared with.

:mod:`~rarefy.anomaly.data` (a synthetic bump hunt with exact densities),
:mod:`~rarefy.anomaly.cathode` (the sideband flow, SR sampling, k-fold classifier, SIC
and the excess test), :mod:`~rarefy.anomaly.compare` (idealized AD, supervised, CWoLa
hunting, ANODE side by side) and :mod:`~rarefy.anomaly.run` (the ``rarefy anomaly`` job).
"""
