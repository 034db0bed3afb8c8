"""Few-label evaluation and fine-tuning of exported weights, always beside cheap baselines on identical splits.

Features and baselines (features, baselines), probes and splits (fewshot, splits, sanity), predictions of
fine-tuned classifiers (finetuning; the fits themselves are train/'s: supervised, heads, segmentation), the
online probe of pretraining (online_probe, probe_chips), scores (metrics), the three tasks behind one registry (tasks: patch -> patches, crop -> crops +
temporal, segment -> segmentation), and what ``eossl evaluate`` / ``eossl finetune`` run (config, runs).
Labelled data is read by :mod:`eossl.data` (labelled, fields, label_rasters).
"""
