"""What the Lambda handlers share: wiring from the environment, powertools set-up, the HTTP contract.

The domain (`ips`) knows nothing of Lambda; this package is the only place the two meet."""
