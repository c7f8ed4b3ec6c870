"""Built-in domains: tau2-bench's ``mock``, ``airline`` and ``retail`` (tools implemented here; their data ship in
``tau2_data/``, see :mod:`.tau2`) and ``store`` (ours, on the store API, data shipped with the package)."""
