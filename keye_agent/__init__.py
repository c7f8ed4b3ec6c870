"""keye-agent: an agent framework around Kuaishou's Keye-VL-2.0."""

__version__ = "0.1.0"
