"""quality_model: what a model is, apart from where it is trained or served.

Features (the input schema), training and evaluation, the constrained search for a lot's setting with
its compiled kernels, and the artefact format with the registry that publishes, verifies and promotes
versions. Dagster (factory_assets) decides when a model is trained on which data; the inference server
decides how it is served. Both import this package; it imports only factory_core.
"""
