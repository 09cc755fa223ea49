"""Importers: runs measured by other tools, brought into MLflow with greenml's names."""
