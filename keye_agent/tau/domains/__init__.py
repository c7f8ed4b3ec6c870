"""Built-in domains: ``mock`` (tau2-bench's, tools implemented here, data from a tau2-bench data folder) and
``store`` (ours, on the store API, data shipped with the package)."""
