"""Everything that speaks SQL: engine, tenant-scoped sessions, models, repositories, migrations."""
