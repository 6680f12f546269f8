"""Rate limits, concurrency and budgets: a Redis store shared by all processes, and an in-process one."""
