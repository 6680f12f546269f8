"""LLM provider adapters, each speaking its service's real wire protocol, streaming included."""
