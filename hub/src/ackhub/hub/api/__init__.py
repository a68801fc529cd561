"""gRPC services: translation between protobuf and the exchange's use cases, and nothing else."""
