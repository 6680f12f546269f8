"""Job queues: the ingestion jobs' way from the API to the worker."""
