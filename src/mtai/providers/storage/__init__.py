"""Object storage for uploaded originals: one interface, a local-directory store and an S3 store.

`open_store(settings)` (factory.py) picks the backend; callers only see `ObjectStore` (base.py).
"""
