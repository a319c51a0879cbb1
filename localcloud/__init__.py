"""The embedded local cloud: the same handlers, topology and wire protocols on one machine, no AWS, no Docker."""
