"""tau2-bench's ``airline`` domain: flight reservations. Tools written here from upstream's data model and tool
semantics; its policy, database and tasks ship in ``../tau2_data`` (or come from ``--tau2-data``)."""

from .models import AirlineDB
from .tools import AirlineTools

__all__ = ["AirlineDB", "AirlineTools"]
