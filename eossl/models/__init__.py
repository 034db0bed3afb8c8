"""Multi-band backbones (timm), band-aware weight loading, feature pools, portable weights (weights) and
self-describing classifiers (classifier)."""
