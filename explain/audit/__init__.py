"""The decision audit store: every decision with its explanation, durable before it is answered."""
