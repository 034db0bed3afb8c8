"""Class maps from fine-tuned classifiers: sliding-window prediction over a scene (maps), written as
Cloud-Optimised GeoTIFFs (cog), configured by :class:`~eossl.predict.config.PredictConfig`."""
