"""The run layer, above the library core: a validated run config (``config``), the objects it
names (``builders``), the typed Zarr store (``store``), and the work on one shard — loading
(``loader``), plain jobs (``jobs``), background writes (``writer``) and the shard worker that
composes them (``worker``) — plus what the driver does around the workers (``plan``).

It needs the ``pipeline`` extra (Zarr, pydantic, PyYAML) but neither Prefect nor Ray: ``tasks/``
wraps it in Prefect tasks and Ray actors.
"""
