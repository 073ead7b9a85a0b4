CREATE TABLE invoices (id serial PRIMARY KEY, total bigint NOT NULL);
