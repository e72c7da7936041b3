"""Planned experiments over ``params.yaml`` keys, queued and analysed through DVC.

``design`` builds a factorial, fractional-factorial, Plackett-Burman or Latin-square
plan with replicate seeds and queues it with ``dvc exp run --queue``. ``effects`` reads
the finished runs from ``dvc exp show --json`` and estimates each factor's effect on a
metric with confidence intervals from the seed replicates.
"""
