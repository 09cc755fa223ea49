"""Where measurements go: the local journal first, then the sinks behind the
:class:`~greenml.sinks.base.Target` protocol (MLflow, the directory sink); names and rules
in docs/mlflow.md."""
