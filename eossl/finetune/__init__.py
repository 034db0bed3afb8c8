"""Few-label evaluation, fine-tuning and prediction.

Data: labelled chips from class folders or label geometries (samples), field time series over acquisitions
(fields), label-raster chips (segmentation). Features and baselines: frozen-backbone pooling (features), per-band
statistics (baselines). Protocols: few-label splits, probe and kNN (fewshot, probe), fine-tuning with layer-wise
LR decay (finetuning), crop classification with spatial blocks and temporal attention (splits, temporal, crops).
Scores: metrics; rows beside the baselines (evaluation, evaluate). Models and maps: self-describing classifiers
(classifier), sliding-window class maps as COGs (predict, cog). Commands' configs and runs: config, runs, tasks.
"""
