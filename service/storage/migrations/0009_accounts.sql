-- Whose account an integration's credentials belong to, when the connector can tell: a digest
-- of the provider's account identity (e.g. the Google account's primary calendar id), never the
-- identity itself. A sync cursor records the account it was made with, so new credentials of
-- the same account continue from it and another account's start over; and a Reauthorize that
-- replaces one account with another revokes the old tokens at the provider. NULL: not known
-- (not verified yet, or the connector cannot tell).
ALTER TABLE credentials ADD COLUMN account text;
