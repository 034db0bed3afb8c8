"""Chips for self-supervised pretraining: window samplers, the chip cache, datasets and the Lightning DataModule."""
