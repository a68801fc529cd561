"""The gRPC metadata the hub reads: the names a client sends (see docs/security.md)."""

AGENCY_HEADER = "x-ackhub-agency"
OPERATOR_HEADER = "x-ackhub-operator"
JURISDICTION_HEADER = "x-ackhub-jurisdiction"
AUTHORIZATION_HEADER = "authorization"
