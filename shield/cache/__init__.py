"""What is stored and purged: the disk cache, the hot set, coalescing, purges and tags."""
