"""Few-label evaluation and fine-tuning of exported weights, always beside cheap baselines on identical splits.

Features and baselines (features, baselines), probes and splits (fewshot, splits, sanity), fine-tuning
(finetuning), scores (metrics), the three tasks behind one registry (tasks: patch -> patches, crop -> crops +
temporal, segment -> segmentation), and what ``eossl evaluate`` / ``eossl finetune`` run (config, runs).
Labelled data is read by :mod:`eossl.data` (labelled, fields, label_rasters).
"""
