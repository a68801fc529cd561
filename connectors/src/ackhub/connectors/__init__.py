"""How deliveries reach an agency: one connector per transport, all behind `ackhub.core.connector.Connector`."""
