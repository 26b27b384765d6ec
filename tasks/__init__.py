"""Prefect tasks and Ray plumbing: thin wrappers that pass URIs and small manifests."""
