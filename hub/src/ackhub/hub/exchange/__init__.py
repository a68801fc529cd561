"""The exchange: publishing, routing, the delivery state machine, retry, escalation."""
