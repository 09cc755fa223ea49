"""Framework integrations: thin adapters from a framework's hooks to greenml.

- :mod:`greenml.integrations.huggingface`: ``GreenMLCallback`` for ``transformers.Trainer``;
- :mod:`greenml.integrations.lightning`: ``GreenMLCallback`` for Lightning's ``Trainer``;
- :mod:`greenml.integrations.distributed`: :class:`~greenml.integrations.distributed.JobRun`,
  which both build on: one measuring process per host, job totals at the end.

Each module imports its framework at the top; nothing imports them unless the user does.
"""
