"""Where measurements go: MLflow and the local journal (see DESIGN.md)."""
