-- The console's overview lists the latest operator alerts emailed (ListAlertEmails: one kind,
-- newest first, a few rows): an index in that order, so the query reads those rows only rather
-- than every email of the kind ever stored, sorted.

create index emails_kind_recent on emails (kind, created_at desc, reference);
