"""Pipelines: ordered stages (catalog -> pretrain -> export -> evaluate -> finetune -> predict -> report) run by
``eossl run``, skipped when unchanged and resumed when interrupted (:mod:`eossl.pipeline.runner`). The stages run
the commands' own ``run`` (:mod:`eossl.commands`, one module per command), handed to the runner as a table."""
