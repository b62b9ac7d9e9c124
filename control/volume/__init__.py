"""Block storage (Cinder v3 compatible): the API, its RPC endpoint and the scheduler."""
