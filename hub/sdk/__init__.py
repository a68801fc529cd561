"""Client side: what an agency runs to publish, subscribe and acknowledge, and what an enterprise runs to
trace its records and verify delivery proofs (synchronous, thread-based)."""

from hub.sdk.agency import AgencyClient, Delivery, Verdict
from hub.sdk.enterprise import EnterpriseClient

__all__ = ["AgencyClient", "Delivery", "EnterpriseClient", "Verdict"]
