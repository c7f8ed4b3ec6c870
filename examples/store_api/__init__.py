"""The store-and-delivery example API; ``python -m examples.store_api`` serves it (``keye_agent.tau.domains.store.api``)."""
