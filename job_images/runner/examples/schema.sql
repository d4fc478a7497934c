-- The tables the example tasks use (examples/seeds.yaml). Load with: psql "$DATABASE_URL" -f schema.sql
CREATE TABLE jwt_tokens (
  id serial PRIMARY KEY, user_id int NOT NULL, token text NOT NULL,
  expires_at timestamptz NOT NULL);
CREATE TABLE sessions (
  id serial PRIMARY KEY, user_id int NOT NULL, last_seen timestamptz NOT NULL,
  expired boolean NOT NULL DEFAULT false);
CREATE TABLE invoices (
  id serial PRIMARY KEY, customer text NOT NULL, due_date date NOT NULL,
  status text NOT NULL DEFAULT 'open');
-- id is the order the steps ran in; `at` from the database's clock.
CREATE TABLE order_events (
  id bigserial PRIMARY KEY, order_id int NOT NULL, step text NOT NULL, job text,
  at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE payment_attempts (
  order_id int NOT NULL, attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE charges (
  order_id int PRIMARY KEY, amount_cents int NOT NULL, attempt int NOT NULL);
CREATE TABLE import_runs (
  id serial PRIMARY KEY, job text, state text NOT NULL, batches int NOT NULL DEFAULT 0,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(), stopped_at timestamptz);
