"""Training, checkpoints and export of portable weights."""
