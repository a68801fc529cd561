"""Client side: what an agency runs to publish, subscribe and acknowledge, and what an enterprise runs to
trace its records and verify delivery proofs (synchronous, thread-based)."""

from ackhub.client.agency import AgencyClient, Delivery, Verdict
from ackhub.client.enterprise import EnterpriseClient

__all__ = ["AgencyClient", "Delivery", "EnterpriseClient", "Verdict"]
