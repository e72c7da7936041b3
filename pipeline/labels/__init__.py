"""Face box and mask labels: one in-memory model, COCO JSON on disk, converters, pseudo-labels.

:mod:`pipeline.labels.model` defines :class:`LabelledImage` and :class:`LabelBox`.
Each format module reads into and writes from that model: :mod:`.coco` (the project's
own format, with masks), :mod:`.voc`, :mod:`.yolo`, :mod:`.opencv_list` and
:mod:`.boxes_csv`. :mod:`.masks` makes instance masks, :mod:`.pseudo` proposes boxes
where detectors agree, and :mod:`.build` assembles the training and test label set.
"""
