"""Kept for old imports: model specs resolve in :mod:`keye_agent.backends.specs` (``resolve_model`` is its
``load_model``)."""

from keye_agent.backends.specs import (
    DEMO_NAME,
    FORMS,
    ModelSpec,
    demo_backend,
    load_model,
    parse_model_spec,
    scripted_from_file,
)

resolve_model = load_model

__all__ = ["DEMO_NAME", "FORMS", "ModelSpec", "demo_backend", "load_model", "parse_model_spec", "resolve_model",
           "scripted_from_file"]
