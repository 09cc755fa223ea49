"""Where measurements go: MLflow and the local journal (names and rules in docs/mlflow.md)."""
