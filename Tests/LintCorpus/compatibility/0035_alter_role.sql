ALTER ROLE CURRENT_USER SET statement_timeout = '5s';
