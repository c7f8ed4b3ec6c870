"""tau2-bench's ``retail`` domain: an online shop's orders, returns and exchanges. Tools written here from
upstream's data model and tool semantics; its policy, database and tasks ship in ``../tau2_data`` (or come from
``--tau2-data``)."""

from .models import RetailDB
from .tools import RetailTools

__all__ = ["RetailDB", "RetailTools"]
