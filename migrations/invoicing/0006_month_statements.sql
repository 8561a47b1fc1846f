-- The month statement's differences (issue 21): every difference a composition of a tenant's
-- month found, kept so that one found before and gone now is shown fixed, and so a person's
-- explanation stays with it. Rows are never deleted; a difference that comes back is open again.
create table statement_differences (
    tenant_id     text not null,
    period        text not null check (period ~ '^[0-9]{4}-[0-9]{2}$'),
    -- A booking's SimplyBook id, `line N (date, amount)`, `invoice` or `simplybook`.
    subject       text not null,
    kind          text not null,
    detail        text not null,
    first_seen    timestamptz not null default now(),
    last_seen     timestamptz not null default now(),
    -- Set when a later composition no longer finds it.
    fixed_at      timestamptz,
    explanation   text check (char_length(explanation) <= 500),
    explained_at  timestamptz,
    explained_by  text,
    primary key (tenant_id, period, subject, kind)
);

-- The latest composition of each tenant's month: when, and the counts the gauges report.
create table month_statements (
    tenant_id         text not null,
    period            text not null check (period ~ '^[0-9]{4}-[0-9]{2}$'),
    composed_at       timestamptz not null default now(),
    open_differences  integer not null,
    missing_deposits  integer not null,
    primary key (tenant_id, period)
);
