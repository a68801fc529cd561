"""The hub's audit log in its database: events, the Merkle tree over them, checkpoints and proofs."""
