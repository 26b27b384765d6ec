"""Prefect flows (the pipeline, one flow per stage) and the ``pathatlas`` command line."""
