-- The console's sign-in state, shared by its replicas: server-side sessions (the cookie holds a
-- random token; only its SHA-256 is stored) and recent failed sign-ins, which throttle guessing.

create table sessions (
    token_sha256  bytea primary key check (length(token_sha256) = 32),
    operator      text not null check (operator ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role          text not null check (role in ('viewer', 'billing', 'admin')),
    -- Every form of the session carries it; a POST without it is refused.
    csrf_token    text not null check (length(csrf_token) >= 32),
    created_at    timestamptz not null default now(),
    expires_at    timestamptz not null,
    check (expires_at > created_at)
);
create index sessions_expiry_idx on sessions (expires_at);

create table login_failures (
    id         bigserial primary key,
    -- The account name as typed (lower-cased, at most 64 characters): unknown names count too.
    account    text not null,
    failed_at  timestamptz not null default now()
);
create index login_failures_account_idx on login_failures (account, failed_at);
