"""A C2SP tlog-witness for the hub's audit log, run by a partner agency (docs/audit.md).

It imports only `ackhub.audit`, the standard library and `cryptography`, so that it ships in the partners'
client distribution without the hub.
"""
