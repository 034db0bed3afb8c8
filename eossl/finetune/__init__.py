"""Few-label evaluation: labelled chips from class folders (samples), frozen-backbone features (features),
band-statistics baselines (baselines), a repeated few-shot linear probe with confidence intervals (probe), and a
report comparing them on identical splits (evaluate)."""
