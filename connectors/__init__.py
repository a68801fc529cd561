"""How deliveries reach an agency: one connector per transport, all behind `connectors.abc.Connector`."""
