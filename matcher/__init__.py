"""The matcher: order books, balances, journal and the ZeroMQ poll loop of one shard."""
