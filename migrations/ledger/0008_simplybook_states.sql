-- SimplyBook's real booking states (issue 16): a booking awaiting the company's approval is
-- recorded as `pending` (neither billed nor cancelled), and the label the company's Status
-- feature shows (its own words, e.g. "Arrived") is kept beside our status, in the booking and in
-- its history, so a label the tenant's map does not know is recorded as text, never guessed.
alter table bookings drop constraint bookings_status_check;
alter table bookings add constraint bookings_status_check
    check (status in ('pending', 'confirmed', 'cancelled', 'completed', 'no_show'));
alter table bookings add column status_label text;
alter table booking_status_history add column status_label text;

-- SimplyBook calls a reconciliation run made (logins, list pages, detail fetches), so what a
-- clean month costs is visible.
alter table reconciliations add column simplybook_calls integer not null default 0;
