"""Thin Prefect flows over ``vgnn_core`` and ``storage``, and the ``vgnn`` command line."""
