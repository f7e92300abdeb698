-- Run rows the ETL cannot forge. Until now the ETL login inserted its run rows itself, so it chose their start time
-- and the transaction that keeps them `running` (0017): a row could name an analyst's or the auditor's long
-- transaction and stay `running` as long as that session lasted, and retention and rewrap wait while a run is
-- running. The ETL login loses INSERT on public.etl_runs; public.begin_etl_run (definitions/05_locks.sql) inserts the
-- row with the database's clock and only with a transaction in progress in another session of the same login (the
-- run's lock session). Together with 0017 (no UPDATE; finish_etl_run and abandon_dead_etl_runs), only piivault's
-- functions write the run history.
REVOKE INSERT ON public.etl_runs FROM piivault_etl;
-- The function lives in migrations/definitions/, applied after this file.
