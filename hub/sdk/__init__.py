"""Client side: what an agency runs to publish, subscribe and acknowledge (synchronous, thread-based)."""

from hub.sdk.agency import AgencyClient, Delivery, Verdict

__all__ = ["AgencyClient", "Delivery", "Verdict"]
