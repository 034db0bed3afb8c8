"""Pipelines: ordered stages (catalog -> pretrain -> export -> evaluate -> finetune -> predict -> report) run by
``eossl run``, skipped when unchanged and resumed when interrupted (:mod:`eossl.pipeline.runner`). Every command,
stage or not, is declared once in :mod:`eossl.pipeline.commands`."""
