"""Storage: the only package that talks to PostgreSQL (asyncpg).

`database.Database` is the port: it hands out a `Tx` (one transaction, or one autocommit
connection) carrying the repositories — `integrations` (state, history, the one
`record_change`), `credentials` and `sign_ins` (sealed here and nowhere else, with the key ring
`sealing.KeyRing`), `sync` (runs, records, the change feed, the cursor; a page commits in one
statement), `claims` (background work and its fencing token), `webhooks` (endpoints with their
sealed secrets, the outbox of deliveries and their claims). Rows become typed domain values
here, and driver exceptions become `errors` (LeaseLost, Gone, Conflict, LockTimeout,
DatabaseUnavailable). SQL lives in `queries/*.sql` (named statements) and `migrations/`.
`watch` and `watch_listener` serve WatchStatus: history reads and the LISTEN connection.
"""
