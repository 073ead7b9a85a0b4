ALTER TABLE audit_log SET SCHEMA reporting;
