"""Rate limits, concurrency and budgets: a Redis store for all processes, an in-process one."""
