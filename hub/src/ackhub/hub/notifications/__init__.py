"""Notifications of changes to an enterprise's records: its subscriptions, the outbox (the audit log read
from a cursor), and sending by Standard Webhooks and SMTP (docs/portal.md)."""
