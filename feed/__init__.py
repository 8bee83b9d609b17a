"""The WebSocket feed: book replicas and fan-out of market data to subscribers."""
