"""The audit log's formats, for anyone: the Merkle tree, signed-note checkpoints, tiles, the canonical
acknowledgement text and its signature, and the offline check of a delivery proof. Depends on `cryptography`
alone."""
