"""What the Lambda handlers share: settings, adapters and each function's composition root, powertools set-up,
the HTTP contract.

The domain (`ips`) knows nothing of Lambda; this package is the only place the two meet."""
