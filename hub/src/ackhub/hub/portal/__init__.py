"""The enterprise portal: an exporter's own records, their timelines and delivery proofs, a public page that
checks a proof, and the enterprise's notification subscriptions (docs/portal.md)."""
