"""The operators' audit console: a Starlette web app served next to the gRPC hub (docs/console.md)."""
