"""The compute service (Nova v2.1 compatible), port 8774."""
