"""What the hub and its plugins (adapters, connectors) share: errors, identifiers, time, the plugin interfaces.

Nothing here imports the hub: a plugin is written and tested with this, `ackhub.audit` and `ackhub.v1` alone."""
