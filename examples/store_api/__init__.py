"""The store-and-delivery example API; ``python -m examples.store_api`` serves it (see ``keye_agent.store_api``)."""
