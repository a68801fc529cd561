"""The audit log: every change of state is an event appended in the same transaction as the change."""
